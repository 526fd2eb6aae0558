"""What a request head may be: its size, and its ``Host``. Checked before the app sees it.

**Size.** httptools sets no limit at all on a request head and uvicorn adds none (h11's is one
16 KiB buffer), so a client without a token could make the API hold megabytes per connection.
The limits are nginx's defaults (``large_client_header_buffers 4 8k``, 32 KiB in all), which
every browser, proxy and API client fits within:

- :data:`MAX_LINE_BYTES` (8 KiB) per line: a longer request line is 414, a longer header 431;
- :data:`MAX_HEAD_BYTES` (32 KiB) for the request line and all headers together: 431;
- :data:`MAX_FIELDS` (100) header fields: 431 (nginx has no count; 100 is Apache httpd's
  ``LimitRequestFields`` and Tomcat's ``maxHeaderCount``, far above the 10 to 20 a browser
  sends).

:class:`HeadScanner` counts them on the raw bytes as they arrive, so nothing over a limit is
ever buffered whole.

**Host** (RFC 9112 section 3.2) feeds the request URL, the URL a DPoP proof must name and error
texts, so it must be one well-formed ``uri-host [":" port]`` (RFC 3986 section 3.2.2):
missing is refused for HTTP/1.1 only (HTTP/1.0 health checks, HAProxy's default, send none),
and two of them, a malformed value, or a port that is not 1 to 65535 are refused always.
"""

from __future__ import annotations

import ipaddress
import json
import re
from http import HTTPStatus

MAX_LINE_BYTES = 8 * 1024
MAX_HEAD_BYTES = 32 * 1024
MAX_FIELDS = 100

_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
_PORT = re.compile(r"[0-9]{1,5}")


class HeadRefused(Exception):
    """The head breaks a rule: answer ``status`` with ``message`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def line_too_long(request_line: bool) -> HeadRefused:
    if request_line:
        return HeadRefused(414, f"The request line is longer than {MAX_LINE_BYTES} bytes.")
    return HeadRefused(431, f"A header line is longer than {MAX_LINE_BYTES} bytes.")


def head_too_large() -> HeadRefused:
    return HeadRefused(431, f"The request head is larger than {MAX_HEAD_BYTES // 1024} KiB.")


def too_many_fields() -> HeadRefused:
    return HeadRefused(431, f"The request has more than {MAX_FIELDS} header fields.")


class HeadScanner:
    """Counts one request head on the raw bytes, up to the empty line that ends it.

    ``scan(data, start)`` returns the offset just past that empty line, or None when the head
    goes on past ``data``; it raises :class:`HeadRefused` as soon as a limit is crossed.
    Empty lines before the request line are skipped, as RFC 9112 section 2.2 allows.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self, *, head_bytes: int = 0, lines: int = 0, tail: bytes = b"\n") -> None:
        """Start a head, or go on with one whose first part was counted elsewhere: its
        ``head_bytes`` and complete ``lines``, and ``tail``, the last bytes before the next
        read (enough to tell whether the current line is empty, just a CR, or more)."""
        self.head_bytes = head_bytes
        self.lines = lines  # complete lines: the request line, then one per field
        # The current line's bytes so far, its CR included (a lower bound, after a carry).
        if tail.endswith(b"\n"):
            self.line_bytes = 0
        elif tail.endswith(b"\n\r"):
            self.line_bytes = 1
        else:
            self.line_bytes = 2
        self._last = tail[-1] if tail else 0x0A  # to see a CR LF split across reads

    def scan(self, data: bytes, start: int = 0) -> int | None:
        pos = start
        while True:
            newline = data.find(b"\n", pos)
            end = len(data) if newline < 0 else newline
            self._count(end - pos)
            if newline < 0:
                if end > pos:
                    self._last = data[end - 1]
                return None
            before = data[newline - 1] if newline > pos else self._last
            empty = self.line_bytes == (1 if before == 0x0D else 0)
            self.line_bytes, self._last, pos = 0, 0x0A, newline + 1
            self.head_bytes += 1
            if self.head_bytes > MAX_HEAD_BYTES:
                raise head_too_large()
            if not empty:
                self.lines += 1
                if self.lines - 1 > MAX_FIELDS:
                    raise too_many_fields()
            elif self.lines:
                return pos

    def _count(self, size: int) -> None:
        self.line_bytes += size
        self.head_bytes += size
        if self.line_bytes > MAX_LINE_BYTES:
            raise line_too_long(request_line=self.lines == 0)
        if self.head_bytes > MAX_HEAD_BYTES:
            raise head_too_large()


def several_hosts() -> HeadRefused:
    return HeadRefused(400, "Send one Host header, not several.")


def missing_host() -> HeadRefused:
    return HeadRefused(400, "An HTTP/1.1 request needs a Host header (RFC 9112 section 3.2).")


def check_host(headers: list[tuple[bytes, bytes]], http_version: str) -> None:
    """Raise :class:`HeadRefused` (400) unless the head has one well-formed ``Host``."""
    hosts = [value for name, value in headers if name.lower() == b"host"]
    if len(hosts) > 1:
        raise several_hosts()
    if not hosts:
        if http_version == "1.0":
            return
        raise missing_host()
    if not valid_host(hosts[0].decode("latin-1")):
        raise HeadRefused(
            400, "The Host header must be a host name or address, with an optional port 1-65535."
        )


def valid_host(value: str) -> bool:
    """``uri-host [":" port]``: a registered name, IPv4 address or ``[IPv6]`` literal."""
    if value.startswith("["):
        literal, bracket, rest = value[1:].partition("]")
        if not bracket or not _ipv6(literal):
            return False
        if not rest:
            return True
        if not rest.startswith(":"):
            return False
        port = rest[1:]
    else:
        host, colon, port = value.partition(":")
        if not _REG_NAME.fullmatch(host):
            return False
        if not colon:
            return True
    return bool(_PORT.fullmatch(port)) and 1 <= int(port) <= 65535


def _ipv6(literal: str) -> bool:
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return "%" not in literal  # a zone id is local to the client (RFC 6874), no Host


def refusal(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, with the API's JSON error body."""
    body = json.dumps({"detail": message}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
