"""A fake Auth0 token endpoint and API behind httpx.MockTransport, and a clock tests can move.

The fake answers like the real ones: the token endpoint reads the form body only (as Auth0 does)
and the API wants the token it handed out, answers 503 with Retry-After when told to, and refuses
files that are not PNG or JPEG the way the API does (415 with a ``detail``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

TOKEN_URL = "https://tenant.test/oauth/token"
API_URL = "https://api.test"
AUDIENCE = "https://cats-dogs-other.test"
CLIENT_ID, CLIENT_SECRET = "ci-client", "ci-secret"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


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

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.url.path == path)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth/token":
            return self._token(request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"token_endpoint": TOKEN_URL})
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
        self.issued.append(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        return httpx.Response(200, json=body)

    def _upload(self, request: httpx.Request) -> httpx.Response:
        if self.unreachable:
            self.unreachable -= 1
            raise httpx.ConnectError("connection refused", request=request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.issued or token in self.revoked:
            challenge = 'Bearer realm="api", error="invalid_token"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge}, json={})
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
