"""A fake Auth0 token endpoint and API behind httpx.MockTransport, a clock tests can move, and
a real HTTP server on loopback that answers whatever a test tells it to (hostile answers too).

The fake answers like the real ones: the token endpoint reads the form body only (as Auth0 does)
and the API wants the token it handed out, answers 503 with Retry-After when told to, and refuses
files that are not PNG or JPEG the way the API does (415 with a ``detail``). Both check DPoP
proofs (signature by the proof's own key, htm, htu, ath, the token's key) and, when given one,
demand a server nonce as RFC 9449 section 8 says.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from kto.client.cli import main
from kto.client.tokens import ClientCredentials

TOKEN_URL = "https://tenant.test/oauth/token"
API_URL = "https://api.test"
AUDIENCE = "https://cats-dogs-other.test"
CLIENT_ID, CLIENT_SECRET = "ci-client", "ci-secret"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def ath(token: str) -> str:
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify_proof(proof: str) -> tuple[dict, str]:
    """The claims of a proof whose signature its own public ``jwk`` checks, and that key's
    thumbprint; fails the test on anything else a verifier must refuse."""
    header = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert "d" not in header["jwk"], "a proof must carry the public key only"
    key = ECKey.import_key(header["jwk"])
    claims = json.loads(jws.deserialize_compact(proof, key, algorithms=["ES256"]).payload)
    return claims, key.thumbprint()


def proof_matches(claims: dict, request: httpx.Request) -> bool:
    url = request.url
    expected = f"{url.scheme}://{url.netloc.decode()}{url.path}"
    return claims.get("htm") == request.method and claims.get("htu") == expected


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeServers:
    """State of the fake issuer and API; every request is recorded."""

    clock: Clock
    token_url: str = TOKEN_URL
    api_url: str = API_URL
    audience: str = AUDIENCE
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    expires_in: int = 3600
    busy: list[str | None] = field(default_factory=list)  # Retry-After values of 503s to send
    unreachable: int = 0  # uploads that fail to connect before the API answers
    requests: list[httpx.Request] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    bound: dict[str, str] = field(default_factory=dict)  # DPoP token -> thumbprint of its key
    token_endpoint: str = TOKEN_URL  # what the discovery document names
    issuer_nonce: str | None = None  # the DPoP-Nonce the token endpoint demands
    api_nonce: str | None = None  # the DPoP-Nonce the API demands
    dpop_ignored: bool = False  # an issuer without DPoP: Bearer tokens whatever is sent
    verify_proof = staticmethod(verify_proof)
    ath = staticmethod(ath)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def credentials(self, http: httpx.Client, **overrides: Any) -> ClientCredentials:
        """Client credentials for this fake issuer, over ``http``."""
        options: dict[str, Any] = {
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "audience": self.audience,
        }
        return ClientCredentials(http, **(options | overrides))

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.url.path == path)

    def handle(self, request: httpx.Request) -> httpx.Response:
        # A copy: an httpx.Auth retry re-sends the same Request with new headers.
        self.requests.append(
            httpx.Request(
                request.method, request.url, headers=request.headers, content=request.content
            )
        )
        if request.url.path == "/oauth/token":
            return self._token(request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"token_endpoint": self.token_endpoint})
        if request.url.path in ("/upload", "/upload/batch"):
            return self._upload(request)
        return httpx.Response(404)

    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.url.query:
            return httpx.Response(400, json={"error": "invalid_request"})
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return httpx.Response(401, json={"error": "access_denied", "error_description": "no"})
        if form.get("audience") != AUDIENCE or form.get("grant_type") != "client_credentials":
            return httpx.Response(403, json={"error": "access_denied"})
        token = f"token-{len(self.issued) + 1}"
        token_type = "Bearer"
        if "DPoP" in request.headers and not self.dpop_ignored:
            claims, jkt = verify_proof(request.headers["DPoP"])
            if self.issuer_nonce is not None and claims.get("nonce") != self.issuer_nonce:
                headers = {"DPoP-Nonce": self.issuer_nonce}
                return httpx.Response(400, headers=headers, json={"error": "use_dpop_nonce"})
            if not proof_matches(claims, request) or "ath" in claims:
                return httpx.Response(400, json={"error": "invalid_dpop_proof"})
            token_type, self.bound[token] = "DPoP", jkt
        self.issued.append(token)
        body = {"access_token": token, "token_type": token_type, "expires_in": self.expires_in}
        return httpx.Response(200, json=body)

    def _refusal(self, request: httpx.Request) -> httpx.Response | None:
        """401 unless the request carries a token this fake issued, with its proof if bound."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        bound = token in self.bound
        if (
            token not in self.issued
            or token in self.revoked
            or scheme != ("DPoP" if bound else "Bearer")
        ):
            challenge = f'{scheme or "Bearer"} realm="api", error="invalid_token"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge}, json={})
        if not bound:
            return None
        claims, jkt = verify_proof(request.headers["DPoP"])
        if self.api_nonce is not None and claims.get("nonce") != self.api_nonce:
            headers = {
                "WWW-Authenticate": 'DPoP error="use_dpop_nonce"',
                "DPoP-Nonce": self.api_nonce,
            }
            return httpx.Response(401, headers=headers, json={})
        if not proof_matches(claims, request) or claims.get("ath") != ath(token):
            return httpx.Response(
                401, headers={"WWW-Authenticate": 'DPoP error="invalid_dpop_proof"'}
            )
        if jkt != self.bound[token]:
            return httpx.Response(401, headers={"WWW-Authenticate": 'DPoP error="invalid_token"'})
        return None

    def _upload(self, request: httpx.Request) -> httpx.Response:
        if self.unreachable:
            self.unreachable -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if (refusal := self._refusal(request)) is not None:
            return refusal
        if self.busy:
            retry_after = self.busy.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return httpx.Response(503, headers=headers, json={"detail": "busy"})
        images = request.content.count(b'name="file"')
        if b"not an image" in request.content:
            return httpx.Response(415, json={"detail": "The file is not a PNG or JPEG image."})
        answer = {"prediction": "Cat", "values": [0.9, 0.05, 0.05]}
        if request.url.path == "/upload":
            return httpx.Response(200, json=answer)
        return httpx.Response(200, json=[answer] * images)


@pytest.fixture(autouse=True)
def _outside_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a GitHub job these are set, and the client would pick --auth github-actions."""
    for name in ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def servers(clock: Clock) -> FakeServers:
    return FakeServers(clock)


@pytest.fixture
def images(tmp_path: Path) -> Callable[..., list[Path]]:
    """Writes files into tmp_path: ``images("a.png", "b.jpg", bad="x.png")``."""

    def make(*names: str, bad: str | None = None) -> list[Path]:
        paths = []
        for name in names:
            path = tmp_path / name
            path.write_bytes(JPEG if name.endswith(".jpg") else PNG)
            paths.append(path)
        if bad is not None:
            path = tmp_path / bad
            path.write_bytes(b"not an image")
            paths.append(path)
        return paths

    return make


@pytest.fixture
def run(servers, monkeypatch):
    """Runs the command with the fake servers (``network=True``: over real HTTP, for flags that
    point at :class:`LoopbackServer`); returns (exit code, stdout, stderr, sleeps)."""
    for name in ("API_URL", "ISSUER", "TOKEN_URL", "CLIENT_SECRET", "DPOP", "ALLOW_INSECURE_HTTP"):
        monkeypatch.delenv(f"CDO_{name}", raising=False)
    monkeypatch.setenv("CDO_CLIENT_ID", servers.client_id)
    monkeypatch.setenv("CDO_AUDIENCE", servers.audience)

    def invoke(
        *args: str,
        secret: str | None = None,
        api: bool = True,
        token_url: bool = True,
        network: bool = False,
    ):
        monkeypatch.setenv("CDO_CLIENT_SECRET", secret or servers.client_secret)
        if api:
            monkeypatch.setenv("CDO_API_URL", servers.api_url)
        if token_url:
            monkeypatch.setenv("CDO_TOKEN_URL", servers.token_url)
        out, err = io.StringIO(), io.StringIO()
        sleeps: list[float] = []
        code = main(
            ["classify", *args],
            transport=None if network else servers.transport,
            sleep=sleeps.append,
            stdout=out,
            stderr=err,
        )
        return code, out.getvalue(), err.getvalue(), sleeps

    return invoke


@dataclass
class LoopbackServer:
    """Real HTTP on 127.0.0.1: each path gets the answer a test set (404 otherwise).

    ``answers`` maps a path (without its query) to (status, JSON-able body or raw bytes);
    ``paths`` records every request's path, query included.
    """

    url: str = ""
    answers: dict[str, tuple[int, object]] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.paths.append(self.path)
                status, body = server.answers.get(self.path.split("?")[0], (404, {}))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    state = LoopbackServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
