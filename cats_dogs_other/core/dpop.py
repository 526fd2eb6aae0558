"""DPoP proof verification (RFC 9449 section 4.3) on joserfc, shared by the API and the dev issuer.

A proof is a JWT the client signs with its own key for each request. Nothing in it is trusted
before its signature checks out, and the signature proves only that the sender holds the key in
the ``jwk`` header; what binds it to this request is ``htm``/``htu``/``iat``/``jti`` (and the
server nonce), and what binds it to a token is ``ath`` and the key's thumbprint (``cnf.jkt``).

The checks run cheapest first and the ``jti`` is recorded last, so proofs that fail any other
rule never take a slot in the replay cache. This module knows nothing of HTTP frameworks: it
raises :class:`ProofError` (and :class:`~cats_dogs_other.core.replay_cache.ReplayCacheFullError`),
and each server maps those to its own answers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import re
import string
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key, RSAKey
from joserfc.jws import JWSRegistry

from cats_dogs_other.core.dpop_nonce import NonceSource
from cats_dogs_other.core.replay_cache import ReplayCache, ReplayError
from cats_dogs_other.core.safe_parsing import (
    UnsafeInputError,
    decode_base64url,
    decode_jose_segment,
)

logger = logging.getLogger(__name__)

PROOF_TYPE = "dpop+jwt"
# Accepted proof algorithms unless configured: ES256 first (the one Auth0 documents), then RSA.
DPOP_ALGORITHMS = ("ES256", "ES384", "PS256", "RS256")
# The same bounds as access tokens: a proof with an RSA-4096 key is under 2 KiB.
MAX_PROOF_BYTES = 8 * 1024
MAX_JTI_CHARS = 256
MAX_IAT = 2**53  # seconds; larger numbers are no date, and may not even convert to a float
KEY_CACHE_SIZE = 1024  # distinct client keys whose parsed header is kept
MAX_HTU_CHARS = 2048
RSA_KEY_BITS = (2048, 8192)
# RFC 9449 section 4.3 point 7: the jwk header must not hold a private key.
PRIVATE_KEY_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# Header parameters whose meaning would change how the signature is checked; none is supported.
REFUSED_HEADER_MEMBERS = frozenset({"crit", "b64"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")  # RFC 3986 section 2.3


class ProofError(Exception):
    """The proof does not hold; ``reason`` is a short label for logs and metrics."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class NonceRequiredError(ProofError):
    """The proof is sound but lacks the current server nonce (``use_dpop_nonce``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="dpop_nonce")


class ReplayedProofError(ProofError):
    """This proof's ``jti`` was already accepted (RFC 9449 section 11.1)."""

    def __init__(self) -> None:
        super().__init__(
            "This DPoP proof was already used; sign a new one (new jti) per request.",
            reason="dpop_replay",
        )


@dataclass(frozen=True, slots=True)
class Proof:
    """A verified proof: the key that signed it (RFC 7638 thumbprint), its id and its ``iat``."""

    jkt: str
    jti: str
    iat: float


def access_token_hash(token: str) -> str:
    """``ath``: base64url of the SHA-256 of the token's ASCII bytes (RFC 9449 section 4.2)."""
    digest = hashlib.sha256(token.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same_text(received: str, expected: str) -> bool:
    """Constant-time equality; ``expected`` is ASCII, so anything else simply differs (and
    ``hmac.compare_digest`` would raise on non-ASCII text)."""
    return received.isascii() and hmac.compare_digest(received.encode(), expected.encode())


def normalise_htu(url: str) -> str | None:
    """Scheme, host, port and path as RFC 3986 syntax-based normalisation compares them
    (section 6.2.2): scheme and host in lower case, the default port dropped, percent-encoded
    unreserved characters decoded and the other escapes in upper case. Dot segments are kept,
    so ``/x/../upload`` never matches ``/upload``.

    Query and fragment are dropped (RFC 9449 section 4.3 point 9); None if it is no http(s) URL
    or it has userinfo (see :func:`has_userinfo`).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if ":" in host:
        host = f"[{host}]"
    authority = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _PERCENT_ENCODED.sub(_normalise_escape, parts.path or "/")
    return f"{scheme}://{authority}{path}"


def has_userinfo(url: str) -> bool:
    """``user@`` or ``user:password@`` before the host: a proof's ``htu`` must not carry it
    (it names no part of the request, and may carry a secret)."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


def _normalise_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


class ProofVerifier:
    """Checks one proof against the request it came with; records its ``jti`` once accepted.

    ``replay=None`` leaves the recording to the caller (the API records in its state store,
    which may be shared and is asynchronous; see :mod:`cats_dogs_other.api.dpop.binding`).
    """

    def __init__(
        self,
        *,
        algorithms: Collection[str],
        replay: ReplayCache | None,
        iat_window_s: int = 60,
        nonces: NonceSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.algorithms = tuple(algorithms)
        self._replay = replay
        self._iat_window_s = iat_window_s
        self._nonces = nonces
        self._clock = clock
        self._registries = {alg: _registry(alg) for alg in algorithms}
        self._key_of = functools.lru_cache(maxsize=KEY_CACHE_SIZE)(self._load_key)

    @property
    def nonces(self) -> NonceSource | None:
        return self._nonces

    def verify(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        jkt: str | None = None,
    ) -> Proof:
        """Every rule of RFC 9449 section 4.3 for a request to ``method url``.

        ``access_token`` and ``jkt`` are given at a resource server (``ath`` and the key binding
        are then checked), left out at a token endpoint.
        """
        header_segment, payload, signing_input, signature = _split(proof)
        alg, key, thumbprint = self._key_of(header_segment)
        self._check_signature(alg, key, signing_input, signature)
        jti, iat = self._check_claims(payload, method, url)
        if access_token is not None:
            _check_binding(payload, access_token, thumbprint, jkt)
        if self._nonces is not None and not self._nonces.is_valid(payload.get("nonce")):
            raise NonceRequiredError("Put the server's current DPoP-Nonce in the proof (nonce).")
        if self._replay is not None:
            try:
                self._replay.add((thumbprint, jti), iat + self._iat_window_s + 1)
            except ReplayError:
                raise ReplayedProofError from None
        return Proof(jkt=thumbprint, jti=jti, iat=iat)

    def _load_key(self, header_segment: str) -> tuple[str, Key, str]:
        """The algorithm, public key and thumbprint a proof header names, once it passes.

        A client sends the same header with every proof, so this is cached (bounded, by the
        exact header text); headers that fail raise and are not cached.
        """
        header = _json_object(header_segment, "header")
        alg = self._check_header(header)
        key = _public_key(header["jwk"], self._registries[alg], alg)
        return alg, key, key.thumbprint()

    def _check_signature(self, alg: str, key: Key, signing_input: bytes, signature: bytes) -> None:
        try:
            valid = self._registries[alg].get_alg(alg).verify(signing_input, signature, key)
        except (JoseError, ValueError, TypeError) as exc:
            logger.debug("DPoP proof refused by joserfc: %s", type(exc).__name__)
            valid = False
        if not valid:
            raise ProofError("The DPoP proof's signature is not valid.", reason="dpop_signature")

    def _check_header(self, header: dict[str, Any]) -> str:
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() != PROOF_TYPE:
            raise ProofError(f"The DPoP proof's typ must be {PROOF_TYPE!r}.", reason="dpop_typ")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._registries:
            allowed = " ".join(self.algorithms)
            raise ProofError(
                f"The DPoP proof's algorithm is not accepted (allowed: {allowed}).",
                reason="dpop_algorithm",
            )
        if refused := sorted(REFUSED_HEADER_MEMBERS & header.keys()):
            raise ProofError(
                f"The DPoP proof's header must not use {', '.join(refused)}.", reason="dpop_header"
            )
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise ProofError("The DPoP proof has no public key (jwk header).", reason="dpop_jwk")
        if PRIVATE_KEY_MEMBERS & jwk.keys():
            raise ProofError(
                "The DPoP proof's jwk holds a private key: send the public key only.",
                reason="dpop_private_key",
            )
        return alg

    def _check_claims(self, payload: dict[str, Any], method: str, url: str) -> tuple[str, float]:
        jti = payload.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
            raise ProofError(
                f"The DPoP proof needs a unique jti (1 to {MAX_JTI_CHARS} characters).",
                reason="dpop_jti",
            )
        if payload.get("htm") != method:
            raise ProofError(
                f"The DPoP proof's htm does not match this request's method ({method}).",
                reason="dpop_htm",
            )
        htu = payload.get("htu")
        if isinstance(htu, str) and len(htu) <= MAX_HTU_CHARS and has_userinfo(htu):
            raise ProofError(
                "The DPoP proof's htu must not contain userinfo (user@): name the URL only.",
                reason="dpop_htu",
            )
        expected = normalise_htu(url)
        if (
            not isinstance(htu, str)
            or len(htu) > MAX_HTU_CHARS
            or expected is None
            or normalise_htu(htu) != expected
        ):
            raise ProofError(
                f"The DPoP proof's htu does not match this request's URL ({expected}).",
                reason="dpop_htu",
            )
        iat = payload.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float) or abs(iat) > MAX_IAT:
            raise ProofError("The DPoP proof has no creation time (iat).", reason="dpop_iat")
        if abs(self._clock() - iat) > self._iat_window_s:
            raise ProofError(
                f"The DPoP proof's iat is more than {self._iat_window_s} s from the server's "
                "clock: sign a fresh proof (and check the client's clock).",
                reason="dpop_iat",
            )
        return jti, float(iat)


def _registry(alg: str) -> JWSRegistry:
    """One algorithm only; joserfc's own size caps (512-byte header: too small for an RSA jwk)
    replaced by the proof's overall bound, checked before joserfc sees it."""
    registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
    registry.max_header_length = MAX_PROOF_BYTES
    registry.max_signature_length = MAX_PROOF_BYTES
    return registry


def _check_binding(
    payload: dict[str, Any], access_token: str, thumbprint: str, jkt: str | None
) -> None:
    ath = payload.get("ath")
    if not isinstance(ath, str) or not same_text(ath, access_token_hash(access_token)):
        raise ProofError(
            "The DPoP proof's ath is not the hash of the access token sent with it.",
            reason="dpop_ath",
        )
    if jkt is None or not same_text(thumbprint, jkt):
        raise ProofError(
            "The DPoP proof is signed by another key than the one the token is bound to.",
            reason="dpop_key_binding",
        )


def _split(proof: str) -> tuple[str, dict[str, Any], bytes, bytes]:
    """Header segment, payload, signing input and signature of a compact JWS."""
    if len(proof) > MAX_PROOF_BYTES:
        raise ProofError("The DPoP proof is larger than 8 KiB.", reason="dpop_too_large")
    segments = proof.split(".")
    if len(segments) != 3 or not all(segments):
        raise ProofError("The DPoP proof is not a signed JWT.", reason="dpop_malformed")
    header, payload, signature = segments
    try:
        signature_bytes = decode_base64url(signature, max_bytes=MAX_PROOF_BYTES)
    except ValueError:
        raise ProofError(
            "The DPoP proof's signature is not base64url.", reason="dpop_malformed"
        ) from None
    signing_input = f"{header}.{payload}".encode("ascii")
    return header, _json_object(payload, "payload"), signing_input, signature_bytes


def _json_object(segment: str, part: str) -> dict[str, Any]:
    """Strict base64url, strict UTF-8, bounded size and nesting, no repeated names, no NaN."""
    try:
        return decode_jose_segment(segment, max_bytes=MAX_PROOF_BYTES)
    except UnsafeInputError:
        raise ProofError(
            f"The DPoP proof's {part} is not readable JSON.", reason="dpop_malformed"
        ) from None


def _public_key(jwk: dict[str, Any], registry: JWSRegistry, alg: str) -> Key:
    try:
        key = JWKRegistry.import_key(jwk)
        registry.get_alg(alg).check_key(key)
    except (JoseError, ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
        logger.debug("DPoP jwk refused: %s", type(exc).__name__)
        raise ProofError(
            f"The DPoP proof's jwk is not a public key for {alg}.", reason="dpop_jwk"
        ) from None
    if isinstance(key, RSAKey):
        bits = key.public_key.key_size
        if not RSA_KEY_BITS[0] <= bits <= RSA_KEY_BITS[1]:
            raise ProofError(
                f"The DPoP proof's RSA key must have {RSA_KEY_BITS[0]} to {RSA_KEY_BITS[1]} bits.",
                reason="dpop_jwk",
            )
    return key
