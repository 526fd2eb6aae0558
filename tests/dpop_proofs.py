"""DPoP proofs for the tests (RFC 9449 section 4.2): a key of one's own, a fresh proof per request.

Signs proofs the way the verifier in :mod:`cats_dogs_other.core.dpop` expects and, with header
and claim overrides, the malformed ones it must refuse. Real clients use the client package's
``kto.client.dpop.DPoPKey``, which cannot sign a wrong proof on purpose.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey, Key
from joserfc.jws import JWSRegistry

from cats_dogs_other.core.dpop import PROOF_TYPE, access_token_hash


class ProofSigner:
    """Holds one private key; signs a new proof (new ``jti``, current ``iat``) for each request."""

    def __init__(self, key: Key | None = None, *, alg: str = "ES256") -> None:
        self.key = key if key is not None else ECKey.generate_key("P-256")
        self.alg = alg
        self.jkt = self.key.thumbprint()  # what the issuer puts in the token's cnf.jkt
        self._jwk = self.key.as_dict(private=False)

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A proof for ``method url``; ``header``/``claims`` override members (None drops one)."""
        protected: dict[str, Any] = {"typ": PROOF_TYPE, "alg": self.alg, "jwk": self._jwk}
        payload: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method,
            "htu": url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(time.time()),
        }
        if access_token is not None:
            payload["ath"] = access_token_hash(access_token)
        if nonce is not None:
            payload["nonce"] = nonce
        protected = _merge(protected, header)
        payload = _merge(payload, claims)
        # Not strict about header members, so tests can sign proofs the verifier must refuse.
        registry = JWSRegistry(algorithms=[self.alg], strict_check_header=False)
        return jws.serialize_compact(protected, _json(payload), self.key, registry=registry)


def _merge(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    merged = {**base, **(overrides or {})}
    return {name: value for name, value in merged.items() if value is not None}


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
