"""The one loopback rule: which hosts plain http may reach, and where a wildcard bind is reached.

Plain http is acceptable only where nobody can sniff it: this machine. The API's settings, the
key URLs a discovery document names, the development issuer's own URL and its admin endpoint
all ask :func:`is_loopback`, so they cannot disagree about, say, ``::ffff:127.0.0.1``.
URLs are parsed by httpx, the client that fetches them, so the check and the fetch read the
same host.
"""

from __future__ import annotations

import ipaddress

import httpx

LOOPBACK = "127.0.0.1"
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (IPv4-mapped IPv6 ones included)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def is_secure_url(url: str) -> bool:
    """An https URL with a host, or a plain http one to a loopback host."""
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    if not parts.host:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.host))


def connect_host(bind_host: str) -> str:
    """The address a client on this machine dials for a server bound to ``bind_host``."""
    return LOOPBACK if bind_host in WILDCARD_HOSTS else bind_host
