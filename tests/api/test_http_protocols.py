"""What a client sends outside a request being answered, on a real uvicorn with each of the
API's protocols: nothing, a slow request head, or a body the API rejected before reading it.

A silent connection and a head that trickles in are closed at the deadline, a head that
completes before it is served. The 401 to an upload without a token goes out before its body is
read: the client must be able to finish sending it and read the 401; the connection must then
be reusable, and it must close by itself: after the keep-alive timeout once idle, and at the
deadline when the body trickles in forever.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.http_protocols import DEADLINE_KEEP_ALIVES, HTTP_PROTOCOLS
from tests.api.support import PARSERS, serve

KEEP_ALIVE_S = 1
DEADLINE_S = KEEP_ALIVE_S * DEADLINE_KEEP_ALIVES
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


def test_a_silent_connection_is_closed_at_the_deadline(address) -> None:
    with socket.create_connection(address) as sock:
        waited = seconds_until_closed(sock, limit_s=DEADLINE_S * 2)
    assert DEADLINE_S - 0.5 <= waited <= DEADLINE_S + 1, f"closed after {waited:.1f} s"


def test_a_trickling_request_head_is_closed_at_the_deadline(address) -> None:
    head = HEALTH[:-2] + b"X-Padding: " + b"x" * 1000  # never ends
    assert trickle(address, head, first=b"") <= DEADLINE_S + 1


def test_a_head_completed_before_the_deadline_is_served(address) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        for offset in range(0, len(HEALTH), 4):  # one piece per half keep-alive: about 4 s
            sock.sendall(HEALTH[offset : offset + 4])
            time.sleep(KEEP_ALIVE_S / 2)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


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


def test_a_trickling_body_is_closed_at_the_deadline(address) -> None:
    assert trickle(address, BODY[1000:], first=HEAD + BODY[:1000]) <= DEADLINE_S + 1


def trickle(address: tuple[str, int], data: bytes, first: bytes) -> float:
    """Send ``first``, then 10 bytes of ``data`` every half keep-alive until the server closes
    the connection; return the seconds that took (fail if it is still open at twice the
    deadline, or closed before the deadline)."""
    start = time.monotonic()
    with socket.create_connection(address) as sock:
        sock.sendall(first)
        sock.settimeout(KEEP_ALIVE_S / 2)
        offset = 0
        while still_open(sock, data[offset : offset + 10]):
            offset += 10
            elapsed = time.monotonic() - start
            assert elapsed < DEADLINE_S * 2, f"still open after {elapsed:.1f} s"
    elapsed = time.monotonic() - start
    assert elapsed >= DEADLINE_S - 0.5, f"closed after {elapsed:.1f} s, before the deadline"
    return elapsed


def still_open(sock: socket.socket, data: bytes) -> bool:
    """Send ``data``, then wait the socket's timeout for the server to close (or answer)."""
    try:
        sock.sendall(data)
        return sock.recv(65536) != b""
    except TimeoutError:
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False
