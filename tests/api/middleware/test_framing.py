"""Ambiguous request framing (RFC 9112 section 6.1) on a real uvicorn, named by its parser.

uvicorn picks httptools when it is installed and h11 otherwise; the API's requirements install
httptools, so it is what production runs, and h11 is what a deployment without it gets. Both
are tested: the answer must be a 400 and a closed connection, and nothing pipelined behind the
request may be served. (h11 0.16 reads such a body as chunked and keeps the connection open, so
the app's middleware answers; httptools 0.9 refuses the request itself.)
"""

from __future__ import annotations

import http.client
import socket

import pytest

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.middleware.http_protocols import HTTP_PROTOCOLS
from tests.api.support import PARSERS, override_principal, serve


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    """Send raw bytes; read until the server closes (or 5 s pass: then it kept it open)."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except TimeoutError:
            return received + b"<still open>"
        return received + b"<closed>"


@pytest.mark.slow
@pytest.mark.parametrize("parser", PARSERS)
def test_content_length_with_transfer_encoding_is_refused_and_closed(
    parser: str, make_settings, module_issuer
) -> None:
    app = create_app(make_settings(), transport=module_issuer.transport)
    override_principal(app)
    smuggled = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"
    request = (
        b"POST /upload HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n" + smuggled
    )
    with serve(app, http=HTTP_PROTOCOLS[parser]) as address:
        response = exchange(address, request)
        assert exchange(address, smuggled).startswith(b"HTTP/1.1 200")  # the server is fine
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert b"connection: close" in response.lower()
    if parser == "h11":  # h11 lets it through: the app's middleware refuses it
        assert b"Transfer-Encoding and Content-Length" in response
    else:  # llhttp refuses it before the app sees it
        assert b"Invalid HTTP request" in response
    assert response.count(b"HTTP/1.1 ") == 1, "the pipelined request was served"
    assert response.endswith(b"<closed>")


@pytest.mark.parametrize("parser", PARSERS)
def test_plain_chunked_and_plain_length_requests_keep_the_connection(
    parser: str, make_settings, module_issuer
) -> None:
    app = create_app(make_settings(), transport=module_issuer.transport)
    with (
        serve(app, http=HTTP_PROTOCOLS[parser]) as address,
        socket.create_connection(address, timeout=5) as sock,
    ):
        for _ in range(2):  # one whole response each: one recv may end inside it
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 200 and b'"status":"OK"' in response.read()
