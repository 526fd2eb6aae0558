"""Access tokens shaped like Auth0's client-credentials tokens. NOT FOR PRODUCTION."""

import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt

from cats_dogs_other.dev_issuer.keys import ALGORITHM, KeyRing


@dataclass(frozen=True)
class TokenRequest:
    """What a validated client-credentials request asks for."""

    client_id: str
    audience: str
    scopes: tuple[str, ...]
    jkt: str | None = None  # thumbprint of the DPoP key the token is bound to (RFC 9449)


class TokenSigner:
    """Signs Auth0-like access tokens with the key ring's current key."""

    def __init__(self, keyring: KeyRing, *, issuer: str, lifetime_s: int) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._lifetime_s = lifetime_s

    def claims(self, request: TokenRequest, now: int) -> dict[str, Any]:
        """The claim set Auth0 puts in an M2M token (same names, same order), plus ``cnf``."""
        claims = {
            "iss": self._issuer,
            "sub": f"{request.client_id}@clients",
            "aud": request.audience,
            "iat": now,
            "exp": now + self._lifetime_s,
            "scope": " ".join(request.scopes),
            "gty": "client-credentials",
            "azp": request.client_id,
        }
        if request.jkt is not None:
            claims["cnf"] = {"jkt": request.jkt}
        return claims

    def issue(self, request: TokenRequest) -> dict[str, Any]:
        """The token endpoint's body: access_token, token_type (DPoP when bound), expires_in..."""
        key = self._keyring.current
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}
        claims = self.claims(request, int(time.time()))
        return {
            "access_token": jwt.encode(header, claims, key, algorithms=[ALGORITHM]),
            "token_type": "Bearer" if request.jkt is None else "DPoP",
            "expires_in": self._lifetime_s,
            "scope": claims["scope"],
        }
