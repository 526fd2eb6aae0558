"""A fake Auth0 tenant: discovery and JWKS through ``httpx.MockTransport``, tokens it signs.

The API under test fetches the documents through ``FakeIssuer.transport`` (``create_app(settings,
transport=...)``), so no socket is opened; the issuer can rotate keys, go down, or serve garbage.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from cats_dogs_other.core.dev import SCOPE

__all__ = [
    "AUDIENCE",
    "DISCOVERY_PATH",
    "ISSUER",
    "JWKS_PATH",
    "SCOPE",
    "FakeIssuer",
    "valid_claims",
]

ISSUER = "https://issuer.test/"
AUDIENCE = "https://cats-dogs-other.test"
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
