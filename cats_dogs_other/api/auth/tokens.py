"""Access-token validation (RFC 9068 / RFC 8725 best practice) on joserfc.

Order matters: the token's size and header are checked first (cheap, nothing trusted, bounded
parsing), then the signature with a key chosen ONLY by ``kid`` and algorithm from the issuer's
published set, and only then are the claims parsed and read. ``jku``, ``x5u``, ``jwk`` and
``x5c`` headers are never looked at; ``b64`` (RFC 7797) and ``crit`` extensions are refused,
since this API implements none (RFC 7515 section 4.1.11).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.errors import InvalidTokenError
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.core.safe_parsing import (
    UnsafeInputError,
    decode_jose_segment,
    parse_json_object,
)

logger = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 8 * 1024
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
# Header parameters of JOSE extensions this API does not implement: refused, never ignored.
UNSUPPORTED_HEADERS = {
    "b64": "The token's payload is not base64url-encoded (b64); it is not accepted.",
    "crit": "The token requires header extensions (crit) that this API does not support.",
}

UNKNOWN_ISSUER = "The token was not issued by the configured issuer."
_CLAIM_MESSAGES = {
    "iss": UNKNOWN_ISSUER,
    "aud": "The token is not meant for this API (audience).",
    "nbf": "The token is not valid yet (nbf).",
    "iat": "The token claims to be issued in the future (iat).",
    "exp": "The token's expiry (exp) is not a valid date.",
}


class KeySource(Protocol):
    """Where a validator finds the key for a ``kid`` and ``alg``: a :class:`KeyCache` when
    serving, a JWKS file for ``explain-token``."""

    async def get(self, kid: str, alg: str) -> Key: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called, as proven by a verified token."""

    client_id: str
    scopes: frozenset[str]
    jkt: str | None = None  # RFC 9449 key thumbprint (cnf.jkt) of a DPoP-bound token
    # The trust policy entry that issued the token; None for OAUTH2_ISSUER. Policy issuers'
    # tokens are Bearer-only: DPOP_MODE applies to OAUTH2_ISSUER alone.
    issuer_name: str | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """``scope`` split on spaces only (RFC 6749 section 3.3), plus Auth0 RBAC ``permissions``.

    Tabs, newlines and other whitespace are not delimiters: they cannot occur in a scope token,
    so a value holding them grants nothing by them.
    """
    found: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        found.update(s for s in scope.split(" ") if s)
    permissions = claims.get("permissions")
    if isinstance(permissions, list):
        found.update(p for p in permissions if isinstance(p, str))
    return frozenset(found)


def bound_key_of(claims: Mapping[str, Any]) -> str | None:
    """The DPoP key thumbprint the token is bound to (RFC 9449 section 6.1), if any.

    A ``cnf`` claim this API cannot check (another confirmation method, or a malformed one)
    refuses the token: ignoring it would turn a sender-constrained token back into a bearer one.
    """
    if "cnf" not in claims:
        return None
    cnf = claims["cnf"]
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str) or not 0 < len(jkt) <= 128:
        raise InvalidTokenError(
            "The token's confirmation (cnf) is not a DPoP key thumbprint (jkt).", reason="cnf"
        )
    return jkt


def unverified_segment(token: str, index: int) -> dict[str, Any]:
    """The header (0) or claims (1) of a compact JWS whose signature is not checked yet.

    The token's size and shape are checked first, and the segment is parsed with bounds and
    unique names, so what the issuer router reads is what the validator would read.
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidTokenError("The token is larger than 8 KiB.", reason="too_large")
    segments = token.split(".")
    if len(segments) != 3:
        raise InvalidTokenError("The token is not a signed JWT.", reason="malformed")
    try:
        return decode_jose_segment(segments[index], max_bytes=MAX_TOKEN_BYTES)
    except UnsafeInputError as exc:
        part = ("header", "claims")[index]
        raise InvalidTokenError(
            f"The token's {part} is not readable: {exc}.", reason="malformed"
        ) from None


class TokenValidator:
    """Turns a bearer token into a :class:`Principal` or raises :class:`InvalidTokenError`."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Collection[str],
        leeway_s: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._clock = clock
        # One registry per algorithm: a token may only be checked with the alg its key allows.
        self._registries = {
            alg: JWSRegistry(algorithms=[alg], strict_check_header=False) for alg in algorithms
        }

    @classmethod
    def from_settings(cls, settings: Settings, keys: KeyCache) -> TokenValidator:
        return cls(
            keys,
            issuer=settings.oauth2_issuer,
            audience=settings.oauth2_audience,
            algorithms=settings.oauth2_algorithms,
            leeway_s=settings.oauth2_leeway_s,
        )

    @property
    def issuer(self) -> str:
        return self._issuer

    async def validate(self, token: str, payload: dict[str, Any] | None = None) -> Principal:
        claims = await self.verified_claims(token, payload)
        client_id = claims.get("azp") or claims.get("client_id") or claims.get("sub")
        client = client_id if isinstance(client_id, str) else None
        self._check_claims(claims, client)
        if client is None:
            raise InvalidTokenError(
                "The token names no client (azp, client_id or sub).", reason="no_client"
            )
        return Principal(client_id=client, scopes=scopes_of(claims), jkt=bound_key_of(claims))

    async def verified_claims(
        self, token: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The header's checks, then the signature with this issuer's keys only; the claims.

        ``payload``: the claims segment already parsed with the same bounds (the issuer
        router reads ``iss`` from it); trusted only once the signature over it holds.
        """
        header = self._check_header(token)
        key = await self._keys.get(header["kid"], header["alg"])
        return self._verify_signature(token, key, header["alg"], payload)

    def _check_header(self, token: str) -> dict[str, Any]:
        header = unverified_segment(token, 0)
        for name, message in UNSUPPORTED_HEADERS.items():
            if name in header:
                raise InvalidTokenError(message, reason=f"unsupported_{name}")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._registries:
            allowed = ", ".join(self._registries)
            raise InvalidTokenError(
                f"The token's algorithm is not accepted (allowed: {allowed}).", reason="algorithm"
            )
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
            raise InvalidTokenError("The token's type (typ) is not an access token.", reason="typ")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise InvalidTokenError("The token has no key id (kid).", reason="missing_kid")
        return header

    def _verify_signature(
        self, token: str, key: Key, alg: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The signature first (joserfc), then the claims, parsed with the same bounds."""
        try:
            verified = jws.deserialize_compact(token, key, registry=self._registries[alg])
        except BadSignatureError:
            raise InvalidTokenError(
                "The token's signature is not valid.", reason="bad_signature"
            ) from None
        except (JoseError, ValueError, TypeError, RecursionError) as exc:
            logger.debug("token refused by joserfc: %s", type(exc).__name__)
            raise InvalidTokenError(
                "The token could not be verified.", reason="malformed"
            ) from None
        if payload is not None:  # the same bytes, parsed by decode_jose_segment
            return payload
        try:
            return parse_json_object(verified.payload, max_bytes=MAX_TOKEN_BYTES, unique_keys=True)
        except UnsafeInputError as exc:
            raise InvalidTokenError(
                f"The token's claims are not readable: {exc}.", reason="malformed"
            ) from None

    def _check_claims(
        self, claims: dict[str, Any], client_id: str | None, *, iat_required: bool = False
    ) -> None:
        options: dict[str, jwt.ClaimsOption] = {
            "iss": {"essential": True, "value": self._issuer},
            "aud": {"essential": True, "value": self._audience},
            "exp": {"essential": True},
        }
        if iat_required:
            options["iat"] = {"essential": True}
        registry = jwt.JWTClaimsRegistry(now=int(self._clock()), leeway=self._leeway_s, **options)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidTokenError(
                "The token has expired.", reason="expired", client_id=client_id
            ) from None
        except MissingClaimError as exc:
            raise InvalidTokenError(
                f"The token lacks the required claim(s) {exc.claim}.",
                reason="missing_claim",
                client_id=client_id,
            ) from None
        except ClaimError as exc:
            message = _CLAIM_MESSAGES.get(exc.claim, f"The token's {exc.claim!r} claim is invalid.")
            raise InvalidTokenError(
                message, reason=f"invalid_{exc.claim}", client_id=client_id
            ) from None
