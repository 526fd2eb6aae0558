"""DPoP (RFC 9449): tokens bound to a key this client generates, and a fresh proof per request.

A DPoP-bound token is worthless without its private key, so the key exists only in this
process's memory and is never written anywhere: it lives as long as the :class:`DPoPKey` and
the in-memory token cache beside it. A token cache file would have to hold the key next to the
token, which turns the file back into a bearer credential; the command therefore refuses
``--dpop`` with ``--token-cache``.

Wiring, as the command does it::

    key = DPoPKey()
    tokens = ClientCredentials(http, ..., token_request_auth=DPoPTokenRequestAuth(key))
    auth = DPoPAuth(tokens, key)
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Generator
from typing import Any

import httpx
from joserfc import jws
from joserfc.jwk import ECKey
from kto.client.auth import BearerAuth
from kto.client.errors import TokenError
from kto.client.text import from_server
from kto.client.tokens import AccessToken, TokenSource

ALGORITHM = "ES256"
CURVE = "P-256"
PROOF_TYPE = "dpop+jwt"
NONCE_HEADER = "DPoP-Nonce"
USE_NONCE = "use_dpop_nonce"


def access_token_hash(token: str) -> str:
    """``ath``: base64url of the SHA-256 of the token's ASCII bytes (RFC 9449 section 4.2)."""
    digest = hashlib.sha256(token.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def htu(url: httpx.URL) -> str:
    """The URL a proof names: scheme, authority and path, without query or fragment."""
    path = url.raw_path.split(b"?", 1)[0].decode("ascii") or "/"
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class DPoPKey:
    """One EC P-256 key (ES256) and the latest ``DPoP-Nonce`` each server sent.

    Nonces are kept per origin: the issuer and the API issue their own (RFC 9449 section 8).
    """

    def __init__(self, key: ECKey | None = None, *, clock: Callable[[], float] = time.time):
        self._key = key if key is not None else ECKey.generate_key(CURVE)
        self._public_jwk = self._key.as_dict(private=False)
        self.jkt = self._key.thumbprint()  # what the issuer puts in the token's cnf.jkt
        self._clock = clock
        self._nonces: dict[tuple[str, str, int | None], str] = {}
        self._lock = threading.Lock()

    @property
    def public_jwk(self) -> dict[str, Any]:
        return dict(self._public_jwk)

    def proof(self, method: str, url: httpx.URL, *, access_token: str | None = None) -> str:
        """A new proof (new ``jti``, current ``iat``) for one request to ``method url``."""
        header = {"typ": PROOF_TYPE, "alg": ALGORITHM, "jwk": self._public_jwk}
        claims: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method,
            "htu": htu(url),
            "iat": int(self._clock()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if (nonce := self.nonce_for(url)) is not None:
            claims["nonce"] = nonce
        payload = json.dumps(claims, separators=(",", ":")).encode()
        return jws.serialize_compact(header, payload, self._key, algorithms=[ALGORITHM])

    def nonce_for(self, url: httpx.URL) -> str | None:
        with self._lock:
            return self._nonces.get(_origin(url))

    def observe(self, response: httpx.Response) -> bool:
        """Keeps the server's ``DPoP-Nonce`` if the answer has one; True if it did."""
        nonce = response.headers.get(NONCE_HEADER)
        if not nonce or not nonce.isascii() or not nonce.isprintable():
            return False
        with self._lock:
            self._nonces[_origin(response.request.url)] = nonce
        return True


class DPoPTokenRequestAuth(httpx.Auth):
    """Signs the token request (``htm`` POST, ``htu`` the token endpoint, no ``ath``).

    An issuer that wants a nonce answers 400 ``use_dpop_nonce`` with a ``DPoP-Nonce`` header
    (RFC 9449 section 8); the request is signed again with it, once. ``ClientCredentials``
    refuses an answer whose ``token_type`` is not :attr:`token_type`: a Bearer token means the
    issuer or a proxy on the way ignored the proof.
    """

    requires_response_body = True
    token_type = "DPoP"  # noqa: S105 - a token type, not a secret

    def __init__(self, key: DPoPKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["DPoP"] = self.key.proof(request.method, request.url)
        response = yield request
        if not self.key.observe(response) or not _asks_for_nonce(response):
            return
        request.headers["DPoP"] = self.key.proof(request.method, request.url)
        response = yield request
        self.key.observe(response)


def _asks_for_nonce(response: httpx.Response) -> bool:
    if response.status_code != 400:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == USE_NONCE


class DPoPAuth(BearerAuth):
    """``Authorization: DPoP <token>`` and a fresh ``DPoP`` proof (with ``ath``) per request.

    A 401 ``use_dpop_nonce`` with a ``DPoP-Nonce`` header is answered once with a proof that
    carries the nonce; every answer's ``DPoP-Nonce`` is kept for the next proof.
    """

    scheme = "DPoP"

    def __init__(self, tokens: TokenSource, key: DPoPKey) -> None:
        super().__init__(tokens)
        self.key = key

    def headers_for(self, method: str, url: httpx.URL, token: AccessToken) -> dict[str, str]:
        if token.token_type.lower() != "dpop":
            raise TokenError(
                f"The issuer answered the DPoP token request with a "
                f"{from_server(token.token_type, 20)} token: "
                "DPoP is not enabled for this API or client. Enable it, or drop --dpop (CDO_DPOP)."
            )
        return {
            "Authorization": f"{self.scheme} {token.value}",
            "DPoP": self.key.proof(method, url, access_token=token.value),
        }

    def observe(self, response: httpx.Response) -> None:
        self.key.observe(response)

    def retry_same_token(self, response: httpx.Response) -> bool:
        challenge = response.headers.get("WWW-Authenticate", "")
        return (
            response.status_code == 401
            and f'error="{USE_NONCE}"' in challenge
            and NONCE_HEADER in response.headers
        )
