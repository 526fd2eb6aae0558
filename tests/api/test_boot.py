"""``python boot.py`` as a real process: loopback issuer (discovery + JWKS over HTTP), real
token, real upload, JSON logs on stdout, and the token nowhere in the output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from joserfc import jwt

from tests.api.support import AUDIENCE, SCOPE


@pytest.fixture
def loopback_issuer(rsa_keys) -> Iterator[str]:
    """A minimal OpenID provider on 127.0.0.1 serving discovery and JWKS."""
    documents: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(documents.get(self.path, {})).encode()
            self.send_response(200 if self.path in documents else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}/"
    documents["/.well-known/openid-configuration"] = {
        "issuer": issuer,
        "jwks_uri": issuer + ".well-known/jwks.json",
    }
    documents["/.well-known/jwks.json"] = {"keys": [rsa_keys["key-1"].as_dict(private=False)]}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield issuer
    server.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_boot_serves_uploads_with_json_logs(
    repo_root, loopback_issuer, rsa_keys, tiny_model, images
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "OAUTH2_ISSUER": loopback_issuer,
        "OAUTH2_AUDIENCE": AUDIENCE,
        "MODEL_PATH": str(tiny_model),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "DEBUG",
        "TF_CPP_MIN_LOG_LEVEL": "0",  # TensorFlow's C++ lines must arrive as JSON too
    }
    now = int(time.time())
    claims = {"iss": loopback_issuer, "aud": AUDIENCE, "sub": "boot-client@clients",
              "azp": "boot-client", "iat": now, "exp": now + 300, "scope": SCOPE}  # fmt: skip
    token = jwt.encode({"alg": "RS256", "kid": "key-1"}, claims, rsa_keys["key-1"])
    process = subprocess.Popen(
        [sys.executable, "boot.py"],
        cwd=repo_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(base + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "API not ready in 90 s"
            time.sleep(0.3)
        response = httpx.post(
            base + "/upload",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "boot-test-1"},
            files={"file": ("red.png", images["red"], "image/png")},
        )
        assert response.status_code == 200
        assert response.json()["prediction"] == "Cat"
    finally:
        process.terminate()
        output, errors = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells the truth.
    assert process.returncode in (0, -15)
    assert token not in output
    assert token.rsplit(".", 1)[1] not in output
    assert errors == ""  # stderr is kept for a start-up failure's one sentence
    entries = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    access = [e for e in entries if e.get("request_id") == "boot-test-1"]
    assert access == [{**access[0], "route": "/upload", "status": 200, "client_id": "boot-client"}]
    messages = {e["message"] for e in entries}
    assert {"Application startup complete.", "Application shutdown complete."} <= messages
