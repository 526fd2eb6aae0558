"""Where the client may send a secret, and how it shows a URL in a message.

The client secret goes in the token request's body and the access token in every upload's
headers, so both travel only over TLS (RFC 6749 section 2.3.1, RFC 6750 section 5.3). Plain
http is accepted for loopback hosts alone, where nothing crosses a network, unless the caller
opts out explicitly (``--allow-insecure-http``). Messages show URLs without their userinfo and
query string: either may hold a password or a key, and messages end up in CI logs.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import httpx
from kto.client.errors import ConfigurationError

OPT_OUT = "--allow-insecure-http (CDO_ALLOW_INSECURE_HTTP=1)"
HIDDEN = "***"
# userinfo (``//user:password@``) and query strings (``?key=...``) inside free text.
_USERINFO = re.compile(r"(?<=//)[^/?#\s@]*@")
_QUERY = re.compile(r"(?<=[^\s?])\?[^\s#]+")


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1``: names that never leave this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_secure(url: str, setting: str, *, allow_insecure_http: bool = False) -> None:
    """Refuses ``url`` unless it is https, or http to a loopback host, or the caller opted out.

    ``setting`` names where the URL came from (a flag, a discovery document), for the message.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise ConfigurationError(f"{setting} is not a valid URL: {redact(url)}.") from None
    if parsed.scheme == "https" and parsed.host:
        return
    if parsed.scheme == "http" and parsed.host:
        if is_loopback(parsed.host) or allow_insecure_http:
            return
        raise ConfigurationError(
            f"{setting} {redact(url)} is plain http to a host that is not loopback, so the "
            f"client secret or the token would cross the network in clear text: use https, "
            f"or pass {OPT_OUT} to allow it."
        )
    raise ConfigurationError(f"{setting} must be an https URL, not {redact(url)}.")


def redact(url: str) -> str:
    """``url`` with its userinfo and query string replaced by ``***`` and no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.netloc:  # not an absolute URL: hide whatever comes before an ``@``
        return redact_text(re.sub(r"^[^/?#]*@", f"{HIDDEN}@", url))
    _, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{HIDDEN}@{hostport}" if at else hostport
    query = f"?{HIDDEN}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def redact_text(text: str) -> str:
    """Free text (an exception's message) with the userinfo and query of any URL hidden."""
    return _QUERY.sub(f"?{HIDDEN}", _USERINFO.sub(f"{HIDDEN}@", text))
