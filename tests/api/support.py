"""Helpers for the API tests (imported by conftest.py and the tests): the fake Auth0-like
issuer behind httpx.MockTransport, token building, images, decodings, running the real app.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import io
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from PIL import Image

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.http_protocols import default_protocol
from cats_dogs_other.api.security import require_principal
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.tokens import Principal
from cats_dogs_other.loopback import LOOPBACK, Child, free_port

ISSUER = "https://issuer.test/"
AUDIENCE = "https://cats-dogs-other.test"
SCOPE = "get::prediction"
JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"


def valid_claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a valid client-credentials access token, with ``overrides`` applied."""
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "test-client@clients",
        "azp": "test-client",
        "iat": now,
        "exp": now + 600,
        "scope": SCOPE,
        "gty": "client-credentials",
        **overrides,
    }


def start_boot(
    repo_root: Path, issuer: str, model: Path, logs: Path, **env: str
) -> tuple[Child, str]:
    """``python boot.py`` as a real process on a free loopback port, trusting ``issuer``.

    ``env`` adds to the environment; stdout goes to ``logs/stdout.log``, stderr to
    ``logs/stderr.log``. Returns the started process and its base URL.
    """
    port = free_port()
    environment = {
        **os.environ,
        "OAUTH2_ISSUER": issuer,
        "OAUTH2_AUDIENCE": AUDIENCE,
        "MODEL_PATH": str(model),
        "HOST": LOOPBACK,
        "PORT": str(port),
        **env,
    }
    api = Child(
        "api",
        [sys.executable, "boot.py"],
        env=environment,
        cwd=repo_root,
        log_path=logs / "stdout.log",
        stderr_path=logs / "stderr.log",
    ).start()
    return api, f"http://{LOOPBACK}:{port}"


@dataclass
class FakeIssuer:
    """Serves discovery and JWKS like Auth0; can rotate keys, go down or serve garbage."""

    keys: dict[str, RSAKey]
    published: list[str] = field(default_factory=lambda: ["key-1"])
    up: bool = True
    jwks_body: bytes | None = None  # overrides the JWKS document (garbage tests)
    discovery_issuer: str = ISSUER
    discovery_up: bool = True  # False: the discovery document answers 404, the keys still serve
    requests: list[httpx.Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.url.path == JWKS_PATH)

    def hosts(self) -> set[str]:
        with self._lock:
            return {r.url.host for r in self.requests}

    def _handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        if not self.up:
            raise httpx.ConnectError("issuer down", request=request)
        if request.url.host != "issuer.test":
            return httpx.Response(404)
        if request.url.path == DISCOVERY_PATH and not self.discovery_up:
            return httpx.Response(404)
        if request.url.path == DISCOVERY_PATH:
            return httpx.Response(
                200,
                json={
                    "issuer": self.discovery_issuer,
                    "jwks_uri": ISSUER + JWKS_PATH.lstrip("/"),
                    "token_endpoint": ISSUER + "oauth/token",
                },
            )
        if request.url.path == JWKS_PATH:
            if self.jwks_body is not None:
                return httpx.Response(200, content=self.jwks_body)
            keys = [self.keys[kid].as_dict(private=False) for kid in self.published]
            return httpx.Response(200, json={"keys": keys})
        return httpx.Response(404)

    def token(
        self,
        kid: str = "key-1",
        *,
        signing_key: str | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with ``signing_key`` (default: the key named by ``kid``).

        Claims default to a valid client-credentials token; pass ``claim=None`` to drop one.
        """
        body = {k: v for k, v in valid_claims(**claims).items() if v is not None}
        head = {"alg": "RS256", "kid": kid, "typ": "at+jwt", **(header or {})}
        key = self.keys[signing_key or kid]
        return jwt.encode(head, body, key, algorithms=[head["alg"]])


@contextlib.contextmanager
def running_app(settings: Settings, issuer: FakeIssuer) -> Iterator[TestClient]:
    """The real app, lifespan and all, talking to the fake issuer."""
    app = create_app(settings, transport=issuer.transport)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@contextlib.contextmanager
def two_replicas(settings: Settings, issuer: FakeIssuer) -> Iterator[tuple[TestClient, TestClient]]:
    """Two instances of the real app with the same settings (a shared STATE_URL, say), each
    with its own lifespan and connection pool, as two replicas would have."""
    with running_app(settings, issuer) as one, running_app(settings, issuer) as two:
        yield one, two


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def dpop(token: str, proof: str | None) -> dict[str, str]:
    """The headers of a DPoP-bound request (no ``DPoP`` header when ``proof`` is None)."""
    headers = {"Authorization": f"DPoP {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return headers


def override_principal(app: FastAPI, scopes: frozenset[str] = frozenset({SCOPE})) -> None:
    """How tests skip token validation: replace the dependency, never a setting."""
    app.dependency_overrides[require_principal] = lambda: Principal("test-client", scopes)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def decoding(x: np.ndarray, delay_s: float = 0.0) -> np.ndarray:
    """``x`` as the batcher takes an image: the route's decode step, a thread-pool future in the
    API, which yields to the event loop at least once (``delay_s`` of decoding) before it ends."""
    await asyncio.sleep(delay_s)
    return x


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def raw_token(key: RSAKey, header: bytes, payload: bytes) -> str:
    """An RS256 compact JWS over exactly these header and payload bytes (no JSON re-encoding),
    for headers and claims a JOSE library would refuse to produce."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = key.raw_value
    assert isinstance(private, rsa.RSAPrivateKey), "a private key signs"
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def random_kid() -> str:
    return uuid.uuid4().hex


# uvicorn's two HTTP/1.1 parsers, for tests run on each (``HTTP_PROTOCOLS[parser]``).
PARSERS = [
    "h11",
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("httptools") is None, reason="httptools is not installed"
        ),
    ),
]


@dataclass(frozen=True)
class Served:
    """A running uvicorn: its address, and the lifespan's state (the app's resources)."""

    host: str
    port: int
    state: dict[str, Any]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


@contextlib.contextmanager
def serve_app(app: FastAPI, **options: Any) -> Iterator[Served]:
    """Run the app under a real uvicorn on 127.0.0.1 (free port).

    ``options`` go to ``uvicorn.Config`` (e.g. ``forwarded_allow_ips``); ``http`` is the API's
    own protocol unless given (``HTTP_PROTOCOLS["h11"]`` for the h11 one).
    """
    import uvicorn

    options.setdefault("http", default_protocol())
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served("127.0.0.1", port, server.lifespan.state)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def serve(app: FastAPI, **options: Any) -> Iterator[tuple[str, int]]:
    """Run the app under a real uvicorn on 127.0.0.1 (free port); yield (host, port)."""
    with serve_app(app, **options) as served:
        yield served.address
