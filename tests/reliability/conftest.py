"""Fixtures for the reliability harness's own tests: a real loopback keys endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

JWKS: dict[str, object] = {"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}


class _KeysHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(JWKS).encode()
        self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def jwks() -> dict[str, object]:
    """What the stand-in keys endpoint serves."""
    return JWKS


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """A plain stdlib HTTP server on a free loopback port, standing in for the issuer."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeysHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
