"""A real token for the load generators, from the development issuer on loopback.

Preferred: ``python -m cats_dogs_other.dev_issuer`` on a free port, asked for a token with the
client-credentials grant like any client would. If that module is missing (it is built in
parallel), the harness serves its own RSA key on loopback and signs the token itself; the API
validates it the same way (discovery, JWKS, RS256).
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.procs import HOST, Process, free_port, http_json, start

AUDIENCE = "https://cats-dogs-other.local"
SCOPE = "get::prediction"


@dataclass
class Issuer:
    url: str
    token: str
    kind: str
    process: Process | None = None
    server: ThreadingHTTPServer | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_issuer(log_dir: Path, token_lifetime_s: int = 7200) -> Issuer:
    if importlib.util.find_spec("cats_dogs_other.dev_issuer") is not None:
        return _dev_issuer(log_dir, token_lifetime_s)
    return _own_issuer(token_lifetime_s)


def _dev_issuer(log_dir: Path, token_lifetime_s: int) -> Issuer:
    port = free_port()
    process = start(
        "dev_issuer",
        ["-m", "cats_dogs_other.dev_issuer", "--host", HOST, "--port", str(port),
         "--audience", AUDIENCE, "--token-lifetime", str(token_lifetime_s),
         "--log-level", "WARNING"],
        {},
        port,
        log_dir,
    )  # fmt: skip
    try:
        process.wait_until("/.well-known/openid-configuration", timeout_s=60)
        answer = http_json(
            port,
            "POST",
            "/oauth/token",
            {
                "grant_type": "client_credentials",
                "client_id": "dev-client",
                "client_secret": "dev-secret",
                "audience": AUDIENCE,
            },
        )
    except Exception:
        process.stop()
        raise
    return Issuer(f"http://{HOST}:{port}/", answer["access_token"], "dev_issuer", process)


def _own_issuer(token_lifetime_s: int) -> Issuer:
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "bench-key", "alg": "RS256", "use": "sig"})
    port = free_port()
    url = f"http://{HOST}:{port}/"
    documents = {
        "/.well-known/openid-configuration": {
            "issuer": url,
            "jwks_uri": f"{url}.well-known/jwks.json",
            "token_endpoint": f"{url}oauth/token",
        },
        "/.well-known/jwks.json": {"keys": [key.as_dict(private=False)]},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            document = documents.get(self.path)
            body = json.dumps(document).encode()
            self.send_response(200 if document else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, port), Handler)
    threading.Thread(target=server.serve_forever, name="bench-issuer", daemon=True).start()
    now = int(time.time())
    claims = {
        "iss": url, "sub": "bench-client@clients", "azp": "bench-client", "aud": AUDIENCE,
        "iat": now, "exp": now + token_lifetime_s, "scope": SCOPE,
    }  # fmt: skip
    token = jwt.encode({"alg": "RS256", "kid": "bench-key", "typ": "JWT"}, claims, key)
    return Issuer(url, token, "harness key on loopback", server=server)
