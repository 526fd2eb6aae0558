"""Which scheme a token must arrive with, and its DPoP proof, turned into the API's answers.

``DPOP_MODE`` decides (RFC 9449 section 7):

- ``allowed`` (default): unbound tokens as ``Bearer``, DPoP-bound tokens (``cnf.jkt``) as
  ``DPoP`` with a proof; a bound token sent as ``Bearer`` is refused, or anyone who copied it
  could use it, which is what binding prevents.
- ``required``: only DPoP-bound tokens, each request with a proof.
- ``disabled``: ``Bearer`` only; bound tokens are refused too, as their binding is not checked.

Each accepted proof's ``jti`` is claimed once in the state store (:mod:`cats_dogs_other.api.state`):
in-process without ``STATE_URL``, shared by every replica with it. When the store cannot say,
the request gets 503 with ``Retry-After``, never an unchecked accept; Bearer requests never
touch the store. Nonces need no store: they are HMACs under the shared ``DPOP_NONCE_SECRET``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from cats_dogs_other.api.auth.tokens import Principal
from cats_dogs_other.api.errors import (
    AuthError,
    DuplicateHeaderError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    MissingCredentialsError,
    ServiceUnavailableError,
    UseDPoPNonceError,
)
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.state import (
    StateStore,
    StateUnavailableError,
    StoreErrorReport,
    hashed_key,
)
from cats_dogs_other.core.dpop import (
    NonceRequiredError,
    Proof,
    ProofError,
    ProofVerifier,
    ReplayedProofError,
)
from cats_dogs_other.core.dpop_nonce import NonceSource

if TYPE_CHECKING:
    from cats_dogs_other.api.auth.issuers import Verifier

logger = logging.getLogger(__name__)

BEARER, DPOP = "Bearer", "DPoP"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The token and the scheme it came with, spelled as RFC 6750 / RFC 9449 do."""

    scheme: str
    token: str


def challenge_schemes(settings: Settings) -> dict[str, str]:
    """Each accepted scheme and its extra challenge parameters, in the order they are offered."""
    algs = f'algs="{" ".join(settings.dpop_algorithms)}"'
    if settings.dpop_mode == "required":
        return {DPOP: algs}
    if settings.dpop_mode == "disabled":
        return {BEARER: ""}
    return {BEARER: "", DPOP: algs}


def read_credentials(request: Request, settings: Settings) -> Credentials:
    """``Authorization: Bearer <token>`` or ``DPoP <token>``, as the mode accepts them."""
    if len(request.headers.getlist("Authorization")) > 1:
        # Which one would a proxy or another server have used? Refuse rather than guess.
        raise InvalidRequestError("Send one Authorization header, not several.")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    scheme = {"bearer": BEARER, "dpop": DPOP}.get(scheme.lower(), "")
    if scheme == DPOP and settings.dpop_mode == "disabled":
        scheme = ""
    if not scheme or not token:
        raise MissingCredentialsError(_how_to_authenticate(settings), scheme=_preferred(settings))
    if scheme == DPOP and len(request.headers.getlist("DPoP")) > 1:
        raise DuplicateHeaderError("DPoP")
    return Credentials(scheme, token)


def _preferred(settings: Settings) -> str:
    return DPOP if settings.dpop_mode == "required" else BEARER


def _how_to_authenticate(settings: Settings) -> str:
    if settings.dpop_mode == "required":
        return "Send a DPoP-bound access token: 'Authorization: DPoP <token>' and a 'DPoP' proof."
    if settings.dpop_mode == "disabled":
        return "Send an access token: 'Authorization: Bearer <token>'."
    return (
        "Send an access token: 'Authorization: Bearer <token>', or 'Authorization: DPoP <token>' "
        "and a 'DPoP' proof for a DPoP-bound token."
    )


class DPoPBinding:
    """Holds a verified token to the scheme it came with; checks the proof of DPoP requests."""

    def __init__(
        self,
        *,
        mode: str,
        verifier: ProofVerifier,
        public_url: str | None,
        state: StateStore,
        iat_window_s: int = 60,
        clock_skew_s: int = 5,
        clock: Callable[[], float] = time.time,
        count_store_error: Callable[[str], None] | None = None,
    ) -> None:
        self.mode = mode
        self._report = StoreErrorReport("dpop", logger, count_store_error)
        self.verifier = verifier
        self._public_url = public_url.rstrip("/") if public_url else None
        self._state = state
        self._iat_window_s = iat_window_s
        self._clock_skew_s = clock_skew_s
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        state: StateStore,
        count_store_error: Callable[[str], None] | None = None,
    ) -> DPoPBinding:
        secret = settings.dpop_nonce_secret
        nonces = (
            NonceSource(
                secret.get_secret_value().encode(), lifetime_s=settings.dpop_nonce_lifetime_s
            )
            if settings.dpop_nonces and secret is not None
            else None
        )
        verifier = ProofVerifier(
            algorithms=settings.dpop_algorithms,
            replay=None,  # recorded in the state store, see _record
            iat_window_s=settings.dpop_iat_window_s,
            nonces=nonces,
        )
        return cls(
            mode=settings.dpop_mode,
            verifier=verifier,
            public_url=settings.dpop_public_url,
            state=state,
            iat_window_s=settings.dpop_iat_window_s,
            clock_skew_s=settings.state_clock_skew_s,
            count_store_error=count_store_error,
        )

    async def authenticate(
        self, request: Request, credentials: Credentials, validator: Verifier
    ) -> Principal:
        """The token's principal, once the token and (for DPoP) its proof hold."""
        try:
            principal = await validator.validate(credentials.token)
        except AuthError as exc:
            exc.scheme = credentials.scheme  # the challenge of the scheme the client used
            raise
        await self.check(request, credentials, principal)
        return principal

    async def check(self, request: Request, credentials: Credentials, principal: Principal) -> None:
        """Raise unless the token's binding and the request's scheme (and proof) agree."""
        if credentials.scheme == BEARER:
            self._check_bearer(principal)
            return
        if principal.jkt is None:
            raise InvalidTokenError(
                "This token is not bound to a DPoP key: send it as 'Authorization: Bearer'.",
                reason="dpop_unbound",
                client_id=principal.client_id,
                scheme=DPOP,
            )
        proofs = request.headers.getlist("DPoP")
        if not proofs:
            raise InvalidDPoPProofError(
                "'Authorization: DPoP' needs a proof in the 'DPoP' header.", reason="dpop_missing"
            )
        proof = self._verify(request, proofs[0], credentials.token, principal.jkt)
        await self._record(proof)

    def response_headers(self, credentials: Credentials) -> dict[str, str]:
        """The next nonce for a DPoP client, when nonces are on (RFC 9449 section 8.2)."""
        nonces = self.verifier.nonces
        if nonces is None or credentials.scheme != DPOP:
            return {}
        return {"DPoP-Nonce": nonces.current()}

    def request_url(self, request: Request) -> str:
        """The URL as the client addressed it: DPOP_PUBLIC_URL if set, else the request's own.

        Without the setting, the scheme is the one uvicorn reports, which follows
        ``X-Forwarded-Proto`` only from the proxies in FORWARDED_ALLOW_IPS, and the host is the
        ``Host`` header.
        """
        if self._public_url:
            return self._public_url + request.url.path
        return str(request.url)

    def _check_bearer(self, principal: Principal) -> None:
        if principal.issuer_name is not None:
            return  # trust-policy issuers are Bearer-only; DPOP_MODE is OAUTH2_ISSUER's
        if principal.jkt is not None and self.mode == "disabled":
            raise InvalidTokenError(
                "This API does not accept DPoP-bound tokens (its DPoP support is disabled).",
                reason="dpop_disabled",
                client_id=principal.client_id,
            )
        if principal.jkt is not None:
            raise InvalidTokenError(
                "This token is bound to a DPoP key: send it as 'Authorization: DPoP <token>' "
                "with a 'DPoP' proof.",
                reason="dpop_bound_as_bearer",
                client_id=principal.client_id,
                scheme=DPOP,
            )
        if self.mode == "required":
            raise InvalidTokenError(
                "This API accepts DPoP-bound tokens only: ask for one with a DPoP proof.",
                reason="dpop_required",
                client_id=principal.client_id,
                scheme=DPOP,
            )

    def _verify(self, request: Request, proof: str, token: str, jkt: str) -> Proof:
        try:
            return self.verifier.verify(
                proof,
                method=request.method,
                url=self.request_url(request),
                access_token=token,
                jkt=jkt,
            )
        except NonceRequiredError as exc:
            nonces = self.verifier.nonces
            assert nonces is not None  # only raised when nonces are on
            raise UseDPoPNonceError(exc.message, nonce=nonces.current()) from None
        except ProofError as exc:
            raise InvalidDPoPProofError(exc.message, reason=exc.reason) from None

    async def _record(self, proof: Proof) -> None:
        """Claim the proof's ``jti`` once, in the (possibly shared) state store; fail closed.

        The record lives while the proof could pass the ``iat`` check anywhere: until
        ``iat + DPOP_IAT_WINDOW_S + STATE_CLOCK_SKEW_S`` (a future-dated ``iat`` included), at
        least one second.
        """
        now = self._clock()
        expires = proof.iat + self._iat_window_s + self._clock_skew_s
        ttl_ms = max(1000, math.ceil((expires - now) * 1000))
        try:
            first = await self._state.claim_once(hashed_key("dpop", proof.jkt, proof.jti), ttl_ms)
        except StateUnavailableError as exc:
            self._report("DPoP proofs refused with 503, replay not checkable: %s", exc)
            raise ServiceUnavailableError(
                "The DPoP replay store is unavailable, so this proof cannot be checked; "
                "retry shortly.",
                retry_after_s=exc.retry_after_s,
            ) from None
        if not first:
            raise InvalidDPoPProofError(ReplayedProofError().message, reason="dpop_replay")
        lost_at = self._state.data_lost_at
        if lost_at is not None and proof.iat < lost_at and now < lost_at + self._window_s:
            # A 503, not a 401: the proof may be honest, and a client retrying after
            # Retry-After signs a new one whose (whole-second) iat follows the restart.
            raise ServiceUnavailableError(
                "The DPoP replay store restarted and lost its records, so a proof signed "
                "before then cannot be checked: sign a new proof and retry.",
                retry_after_s=max(1.0, math.ceil(lost_at) - now),
            )

    @property
    def _window_s(self) -> float:
        return self._iat_window_s + self._clock_skew_s
