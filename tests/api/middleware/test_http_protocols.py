"""What a client sends outside a request being answered, on a real uvicorn with each of the
API's protocols: nothing, a slow request head, or a body the API rejected before reading it.

A silent connection and a head that trickles in are closed at the deadline, a head that
completes before it is served. The 401 to an upload without a token goes out before its body is
read: the client must be able to finish sending it and read the 401; the connection must then
be reusable, and it must close by itself: after the keep-alive timeout once idle, and at the
deadline when the body trickles in forever.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.middleware.http_protocols import DEADLINE_KEEP_ALIVES, HTTP_PROTOCOLS
from cats_dogs_other.api.middleware.request_head import MAX_FIELDS, MAX_HEAD_BYTES, MAX_LINE_BYTES
from cats_dogs_other.loopback import LOOPBACK
from tests.api.support import PARSERS, serve, start_boot

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


@pytest.mark.slow
def test_a_silent_connection_is_closed_at_the_deadline(address) -> None:
    with socket.create_connection(address) as sock:
        waited = seconds_until_closed(sock, limit_s=DEADLINE_S * 2)
    assert DEADLINE_S - 0.5 <= waited <= DEADLINE_S + 1, f"closed after {waited:.1f} s"


@pytest.mark.slow
def test_a_trickling_request_head_is_closed_at_the_deadline(address) -> None:
    head = HEALTH[:-2] + b"X-Padding: " + b"x" * 1000  # never ends
    assert trickle(address, head, first=b"") <= DEADLINE_S + 1


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- request heads: size limits and Host (RFC 9112 sections 2.3, 3.2, 5) ---------------------


@pytest.fixture(scope="module", params=PARSERS)
def head_server(request, make_settings, module_issuer) -> Iterator[tuple[str, int]]:
    app = create_app(make_settings(), transport=module_issuer.transport)
    with serve(app, http=HTTP_PROTOCOLS[request.param], timeout_keep_alive=KEEP_ALIVE_S) as served:
        yield served


def exchange(address: tuple[str, int], data: bytes) -> tuple[int, bytes]:
    """Send ``data`` on a new connection and read until the server closes it (fail if it does
    not within 5 s): the first answer's status and everything the server sent."""
    with socket.create_connection(address, timeout=5) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pytest.fail(f"the server did not close the connection: {received[:200]!r}")
        except ConnectionResetError:
            pass
    assert received.startswith(b"HTTP/1.1 "), received[:200]
    return int(received[9:12]), received


def head(*fields: bytes, target: bytes = b"/health", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + b"".join(f + b"\r\n" for f in fields)


CLOSE = b"Connection: close"
HOST = b"Host: test"
MIB = 1024 * 1024
FLOOD_CONNECTIONS = 100
FLOOD_CONCURRENCY = 25
RSS_SLACK = 8 * MIB
OVERSIZED = [  # each closes its connection once answered, whatever the answer
    head(HOST, CLOSE, b"X-Long: " + b"v" * MIB) + b"\r\n",
    head(HOST, CLOSE, *[b"X: v"] * (MIB // 6)) + b"\r\n",
    head(HOST, CLOSE, *[b"X-F%d: " % i + b"v" * 8000 for i in range(128)]) + b"\r\n",
]


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (head(HOST, CLOSE, target=b"/health?" + b"q" * MAX_LINE_BYTES) + b"\r\n", 414, b"line"),
        (head(HOST, CLOSE, b"X-Long: " + b"v" * MAX_LINE_BYTES) + b"\r\n", 431, b"header line"),
        (
            head(HOST, CLOSE, *[b"X-F%d: v" % i for i in range(MAX_FIELDS)]) + b"\r\n",
            431,
            b"fields",
        ),
        (
            head(HOST, CLOSE, *[b"X-F%d: " % i + b"v" * 500 for i in range(70)]) + b"\r\n",
            431,
            b"KiB",
        ),
        # What the attack battery sent, 1 MiB each: one line, many fields, a big block.
        (head(HOST, b"X-Long: " + b"v" * MIB) + b"\r\n", 431, b"header line"),
        (head(HOST, *[b"X: v"] * (MIB // 6)) + b"\r\n", 431, b"fields"),
        (head(HOST, *[b"X-F%d: " % i + b"v" * 8000 for i in range(128)]) + b"\r\n", 431, b"KiB"),
        (head(HOST, target=b"/" + b"p" * MIB) + b"\r\n", 414, b"line"),
    ],
    ids=[
        "long-target",
        "long-line",
        "101-fields",
        "40KiB",
        "1MiB-line",
        "1MiB-fields",
        "1MiB-block",
        "1MiB-target",
    ],
)
def test_a_head_over_a_limit_is_refused_and_the_connection_closed(
    head_server, data: bytes, status: int, words: bytes
) -> None:
    answer, received = exchange(head_server, data + HEALTH)
    assert answer == status, received[:300]
    assert b"connection: close" in received.lower()
    assert words in received
    assert b"HTTP/1.1 200" not in received  # nothing after it is served


def test_a_head_within_every_limit_is_served(head_server) -> None:
    fields = [HOST, CLOSE, b"X-Long: " + b"v" * (MAX_LINE_BYTES - 12)]
    count = MAX_FIELDS - len(fields)
    fill = (MAX_HEAD_BYTES - len(head(*fields)) - 512) // count - len(b"X-F00: \r\n")
    fields += [b"X-F%02d: " % i + b"v" * fill for i in range(count)]
    data = head(*fields) + b"\r\n"
    assert MAX_HEAD_BYTES - 1024 < len(data) <= MAX_HEAD_BYTES
    assert exchange(head_server, data)[0] == 200


def test_a_20_kib_head_that_arrives_in_two_parts_is_served(head_server) -> None:
    """h11's own bound (16 KiB of incomplete head, then 400) is raised to the 32 KiB limit."""
    fields = [HOST, CLOSE] + [b"X-F%d: " % i + b"v" * 1000 for i in range(20)]
    data = head(*fields) + b"\r\n"
    with socket.create_connection(head_server, timeout=5) as sock:
        sock.sendall(data[: 17 * 1024])
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # no answer to a head not yet complete
            sock.recv(65536)
        sock.settimeout(5)
        sock.sendall(data[17 * 1024 :])
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_a_head_split_across_many_reads_is_still_counted(head_server) -> None:
    data = head(HOST, b"X-Long: " + b"v" * MIB) + b"\r\n"
    with socket.create_connection(head_server, timeout=5) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for offset in range(0, len(data), 1000):
                sock.sendall(data[offset : offset + 1000])
        assert sock.recv(65536).startswith(b"HTTP/1.1 431")


def test_an_oversized_head_pipelined_behind_a_body_closes_the_connection(head_server) -> None:
    """The head starts in the same read as the body before it (httptools parses that read
    whole): the first request is answered, the oversized one never served, the rest dropped."""
    first = b"GET /health HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
    answer, received = exchange(head_server, first + OVERSIZED[0] + HEALTH)
    assert answer == 200, received[:300]
    assert received.count(b"HTTP/1.1 200") == 1


@pytest.mark.parametrize(
    "host",
    [b"test", b"127.0.0.1:8000", b"[::1]", b"[::1]:8000", b"api.example.com:443", b"xn--d1a.t"],
)
def test_a_well_formed_host_is_served(head_server, host: bytes) -> None:
    assert exchange(head_server, head(b"Host: " + host, CLOSE) + b"\r\n")[0] == 200


@pytest.mark.parametrize(
    "fields",
    [
        [],  # HTTP/1.1 requires one
        [HOST, HOST],
        [HOST, b"Host: other"],
        [b"Host: a b"],
        [b"Host: u@127.0.0.1"],
        [b"Host: test:99999999"],
        [b"Host: test:0"],
        [b"Host: test:65536"],
        [b"Host: test:80x"],
        [b"Host: test:"],
        [b"Host: [::1"],
        [b"Host: [not-v6]:80"],
        [b"Host: "],
        [b"Host: a/b"],
    ],
    ids=lambda fields: b"|".join(fields).decode() or "missing",
)
def test_a_missing_repeated_or_malformed_host_is_400_and_closes(head_server, fields) -> None:
    answer, received = exchange(head_server, head(*fields) + b"\r\n" + HEALTH)
    assert answer == 400, received[:300]
    assert b"Host" in received
    assert b"HTTP/1.1 200" not in received  # nothing after it is served


def test_an_http_1_0_request_without_host_is_served(head_server) -> None:
    """HAProxy's default health check, and other HTTP/1.0 probes, send no Host."""
    answer, received = exchange(head_server, head(version=b"HTTP/1.0") + b"\r\n")
    assert answer == 200, received[:300]


# --- memory after a flood of oversized heads, on the API run as it is deployed ----------------


def resident_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.process
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_memory_returns_after_a_flood_of_oversized_heads(
    repo_root, loopback_issuer, tiny_model, tmp_path
) -> None:
    api, base = start_boot(repo_root, loopback_issuer, tiny_model, tmp_path)
    address = (LOOPBACK, int(base.rsplit(":", 1)[1]))
    try:
        api.wait_http(base + "/health", timeout_s=90, interval_s=0.2)
        for data in OVERSIZED:  # once each first: what a first answer allocates for good
            exchange(address, data)
        baseline = resident_bytes(api.pid)
        floods = [OVERSIZED[i % len(OVERSIZED)] for i in range(FLOOD_CONNECTIONS)]
        with ThreadPoolExecutor(FLOOD_CONCURRENCY) as pool:
            statuses = list(pool.map(lambda data: exchange(address, data)[0], floods))
        time.sleep(1)  # the bar is the memory one second after the connections closed
        after = resident_bytes(api.pid)
    finally:
        api.stop(grace_s=30)
    grown = (after - baseline) / MIB
    print(f"VmRSS {baseline / MIB:.1f} MiB before, {after / MIB:.1f} MiB after ({grown:+.1f})")
    assert after <= baseline + RSS_SLACK, f"VmRSS grew by {grown:.1f} MiB"
    assert set(statuses) == {431}, statuses
