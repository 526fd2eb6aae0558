"""The head limits and the Host rule on their own: where a head ends, what each limit counts.

The same rules on a real server, with each parser, are in test_http_protocols.py.
"""

from __future__ import annotations

import pytest

from cats_dogs_other.api.middleware.request_head import (
    MAX_FIELDS,
    MAX_HEAD_BYTES,
    MAX_LINE_BYTES,
    HeadRefused,
    HeadScanner,
    check_host,
    valid_host,
)

HEAD = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def scan_in_pieces(data: bytes, size: int) -> int | None:
    """Feed ``data`` in pieces of ``size`` bytes: the offset just past the head, or None."""
    scanner = HeadScanner()
    for start in range(0, len(data), size):
        found = scanner.scan(data[start : start + size])
        if found is not None:
            return start + found
    return None


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_the_end_of_the_head_is_found_whatever_the_reads(size: int) -> None:
    assert scan_in_pieces(HEAD + b"body", size) == len(HEAD)


def test_bare_line_feeds_and_leading_empty_lines_are_read_as_llhttp_and_h11_do() -> None:
    head = b"\r\n\r\nGET / HTTP/1.1\nHost: a\n\n"
    assert HeadScanner().scan(head + b"body") == len(head)
    assert HeadScanner().scan(b"GET / HTTP/1.1\r\nHost: a\r\n") is None


def test_a_scan_may_start_inside_the_data() -> None:
    assert HeadScanner().scan(b"xx" + HEAD, 2) == 2 + len(HEAD)


def test_every_limit_holds_exactly_at_its_value() -> None:
    line = b"X: " + b"v" * (MAX_LINE_BYTES - 4) + b"\r\n"  # CR included: 8 KiB
    assert HeadScanner().scan(b"GET / HTTP/1.1\r\n" + line + b"\r\n") is not None
    fields = b"".join(b"X: v\r\n" for _ in range(MAX_FIELDS))
    assert HeadScanner().scan(b"GET / HTTP/1.1\r\n" + fields + b"\r\n") is not None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /" + b"p" * MAX_LINE_BYTES, 414),  # the request line, before its end arrives
        (b"GET / HTTP/1.1\r\nX: " + b"v" * MAX_LINE_BYTES, 431),
        (b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * (MAX_FIELDS + 1), 431),
        (b"GET / HTTP/1.1\r\n" + (b"X: " + b"v" * 1000 + b"\r\n") * 33, 431),
        (b"\r\n" * (MAX_HEAD_BYTES // 2 + 1), 431),  # empty lines count towards the head
    ],
    ids=["request-line", "header-line", "fields", "head", "empty-lines"],
)
def test_each_limit_is_refused_once_crossed(data: bytes, status: int) -> None:
    with pytest.raises(HeadRefused) as refused:
        scan_in_pieces(data, 4096)
    assert refused.value.status == status


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "a.b-c_d~e",
        "127.0.0.1",
        "a:1",
        "a:65535",
        "[::1]",
        "[2001:db8::1]:443",
        "%41b",
        "sub!$&'()*+,;=x",
    ],
)
def test_valid_hosts(value: str) -> None:
    assert valid_host(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a b",
        "u@h",
        "u:p@h",
        "h:0",
        "h:65536",
        "h:99999999",
        "h:",
        "h:8x",
        "h:+80",
        "[::1",
        "::1",
        "[::1]x",
        "[::1]:",
        "[fe80::1%25eth0]",
        "[v1.x]",
        "a/b",
        "a?b",
        "a#b",
        "h:८०",
        "%4",
        "a\tb",
    ],
)
def test_invalid_hosts(value: str) -> None:
    assert not valid_host(value)


def test_host_is_required_of_http_1_1_only_and_only_once() -> None:
    check_host([], "1.0")
    check_host([(b"Host", b"a")], "1.1")
    for headers, version in [([], "1.1"), ([(b"host", b"a"), (b"HOST", b"a")], "1.0")]:
        with pytest.raises(HeadRefused):
            check_host(headers, version)


@pytest.mark.parametrize(
    ("tail", "data", "end"),
    [
        (b"ue", b"\r\n\r\nbody", 4),  # inside a field: its line ends first
        (b"e\r", b"\n\r\nbody", 3),  # between a field's CR and LF
        (b"\n\r", b"\nbody", 1),  # between the empty line's CR and LF
        (b"\r\n", b"\r\nbody", 2),  # after a complete field
    ],
)
def test_a_head_counted_elsewhere_goes_on_where_the_read_ended(tail, data, end) -> None:
    """After a pipelined head began in a read the scanner did not see (see http_protocols)."""
    scanner = HeadScanner()
    scanner.reset(head_bytes=100, lines=3, tail=tail)
    assert scanner.scan(data) == end
    assert scanner.head_bytes == 100 + end
