"""The battery's token issuer: Auth0-shaped discovery and JWKS over TLS on loopback, with faults.

Keys and tokens come from the test suite's fake issuer
(``cats_dogs_other.testing.issuer.FakeIssuer``), so the battery signs exactly the tokens the
API's own tests sign. The documents are served by a plain
HTTP server on loopback and reached through the reliability harness's fault-injecting proxy
(``reliability.fault_proxy``) listening with TLS: the validators see one https issuer that
can be switched to refuse connections, answer 503, hang or send garbage, and the proxy counts
every fetch. The certificate comes from a throwaway CA (``trustme``); every validator trusts it
through ``SSL_CERT_FILE``, the variable OpenSSL, httpx, aiohttp and urllib all read.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import trustme
from joserfc.jwk import RSAKey

from cats_dogs_other.loopback import LOOPBACK
from cats_dogs_other.testing.issuer import FakeIssuer
from reliability.fault_proxy import FaultProxy
from reliability.stack import AUDIENCE

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"
KIDS = ("key-1", "key-2", "key-3", "attacker")


def make_keys() -> dict[str, RSAKey]:
    """The issuer's keys (key-3 is published only when the battery rotates) and an outsider's."""
    return {
        kid: RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})
        for kid in KIDS
    }


class TestIssuer:
    """Start with ``with TestIssuer(keys, workdir) as issuer:``; ``issuer.url`` is the ``iss``."""

    __test__ = False  # not a pytest class

    def __init__(self, keys: dict[str, RSAKey], workdir: Path) -> None:
        self.fake = FakeIssuer(keys, published=["key-1", "key-2"])
        self.audience = AUDIENCE
        authority = trustme.CA()
        certificate = authority.issue_cert(LOOPBACK)
        self.ca_file = workdir / "issuer-ca.pem"
        workdir.mkdir(parents=True, exist_ok=True)
        authority.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        self.client_context = ssl.create_default_context(cafile=str(self.ca_file))
        self._documents = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._documents.daemon_threads = True
        self._thread = threading.Thread(target=self._documents.serve_forever, daemon=True)
        upstream = f"http://{LOOPBACK}:{self._documents.server_address[1]}"
        self.proxy = FaultProxy(upstream, host=LOOPBACK, ssl_context=context)

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._thread.start()
        self.proxy.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proxy.stop()
        self._documents.shutdown()
        self._documents.server_close()

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.proxy.port}/"

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH.lstrip("/")

    # -- what the battery controls ----------------------------------------------------------

    def set_mode(self, mode: str, *, delay_s: float = 0.0) -> None:
        """One of the fault proxy's modes: pass, refuse, error, reset, slow, garbage..."""
        self.proxy.set_mode(mode, delay_s=delay_s)

    def publish(self, *kids: str) -> None:
        self.fake.published = list(kids)

    def fetches(self, since: float = 0.0) -> int:
        """Requests for discovery or keys that reached the issuer since ``since`` (monotonic)."""
        return self.proxy.count(since)

    def last_fetch_at(self) -> float | None:
        hits = list(self.proxy.hits)
        return hits[-1].at if hits else None

    def token(
        self, kid: str = "key-1", *, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """An Auth0-shaped access token (typ JWT, client-credentials claims); see FakeIssuer."""
        claims = {"iss": self.url, "aud": self.audience, **claims}
        return self.fake.token(kid, header={"typ": "JWT", **(header or {})}, **claims)

    # -- the documents ----------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "token_endpoint": self.url + "oauth/token",
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.fake.keys[kid].as_dict(private=False) for kid in self.fake.published]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Documents(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                documents = {DISCOVERY_PATH: issuer.discovery, JWKS_PATH: issuer.jwks}
                build = documents.get(self.path)
                body = json.dumps(build()).encode() if build else b'{"error": "not found"}'
                self.send_response(200 if build else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Documents


def wait_quiet(issuer: TestIssuer, quiet_s: float) -> None:
    """Sleep until ``quiet_s`` have passed since the issuer's last fetch."""
    last = issuer.last_fetch_at()
    if last is not None:
        time.sleep(max(0.0, last + quiet_s - time.monotonic()))
