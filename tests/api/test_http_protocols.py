"""A body the API rejected before reading it, on a real uvicorn with each of the API's protocols.

The 401 to an upload without a token goes out before its body is read. The client must be able
to finish sending it and read the 401; the connection must then be reusable, and it must close
by itself: after the keep-alive timeout once idle, and at the linger deadline when the body
trickles in forever.
"""

from __future__ import annotations

import importlib.util
import socket
import time
from collections.abc import Iterator

import pytest

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.http_protocols import HTTP_PROTOCOLS, LINGER_KEEP_ALIVES
from tests.api.support import serve

KEEP_ALIVE_S = 1
PARSERS = [
    "h11",
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("httptools") is None, reason="httptools is not installed"
        ),
    ),
]
BODY = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n" + b"x" * 200_000 + b"\r\n--b--\r\n"
)
HEAD = (
    b"POST /upload HTTP/1.1\r\nHost: test\r\n"
    b"Content-Type: multipart/form-data; boundary=b\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)
HEALTH = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture(params=PARSERS)
def address(request, make_settings, module_issuer) -> Iterator[tuple[str, int]]:
    app = create_app(make_settings(), transport=module_issuer.transport)
    protocol = HTTP_PROTOCOLS[request.param]
    with serve(app, http=protocol, timeout_keep_alive=KEEP_ALIVE_S) as served:
        yield served


def rejected_upload(address: tuple[str, int]) -> socket.socket:
    """A connection whose upload got its 401 after 1,000 of its 200,000 body bytes."""
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(HEAD + BODY[:1000])
    response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 401"), response[:200]
    return sock


def seconds_until_closed(sock: socket.socket, limit_s: float) -> float:
    """How long the server takes to close ``sock`` (``inf`` if it is still open at ``limit_s``)."""
    start = time.monotonic()
    sock.settimeout(limit_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return float("inf")
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_the_connection_closes_after_the_keep_alive_once_the_body_is_in(address) -> None:
    with rejected_upload(address) as sock:
        sock.sendall(BODY[1000:])
        waited = seconds_until_closed(sock, limit_s=KEEP_ALIVE_S * 4)
    assert waited <= KEEP_ALIVE_S * 2, f"still open {waited:.1f} s after the body"


def test_the_connection_serves_the_next_request_after_the_rejected_body(address) -> None:
    with rejected_upload(address) as sock:
        sock.sendall(BODY[1000:] + HEALTH)
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_a_stalled_body_is_closed_after_the_keep_alive(address) -> None:
    with rejected_upload(address) as sock:
        waited = seconds_until_closed(sock, limit_s=KEEP_ALIVE_S * 4)
    assert waited <= KEEP_ALIVE_S * 2, f"still open {waited:.1f} s with no body coming"


def test_a_trickling_body_is_closed_at_the_linger_deadline(address) -> None:
    linger_s = KEEP_ALIVE_S * LINGER_KEEP_ALIVES
    start = time.monotonic()
    with rejected_upload(address) as sock:
        sock.settimeout(KEEP_ALIVE_S / 2)  # 10 bytes every half keep-alive, never idle long
        for offset in range(1000, len(BODY), 10):
            if time.monotonic() - start > linger_s * 2 or not still_open(sock, BODY[offset:][:10]):
                break
    elapsed = time.monotonic() - start
    assert elapsed <= linger_s * 2, f"still open after {elapsed:.1f} s of trickling"
    assert elapsed >= linger_s - 0.5, f"closed after {elapsed:.1f} s, before the deadline"


def still_open(sock: socket.socket, data: bytes) -> bool:
    """Send ``data``, then wait the socket's timeout for the server to close."""
    try:
        sock.sendall(data)
        return sock.recv(65536) != b""
    except TimeoutError:
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False
