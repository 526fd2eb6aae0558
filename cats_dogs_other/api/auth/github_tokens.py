"""Validation of GitHub Actions OIDC tokens: the signature and times, then the claim policy.

What separates it from the Auth0 path (:class:`cats_dogs_other.api.auth.tokens.TokenValidator`):

* ``aud`` must be ONE string equal to the entry's audience; a list is refused even when it holds
  it (GitHub mints one audience per request; a list means another token service);
* ``iat`` is required, and a token older than ``max_token_age_s`` is refused (GitHub's live
  about 5 minutes; a leaked one must not serve for hours if an issuer sets a long ``exp``);
* the claim policy (:mod:`cats_dogs_other.api.auth.github_policy`) decides the scopes: no matching
  rule gives a principal without scopes, so the caller gets 403 ``insufficient_scope`` whose
  description names the missing scope only; the failing claim is logged here;
* ``single_use``: the ``jti`` is recorded in the shared state store until ``exp``, and its
  second use is a 401; a store that cannot answer is a 503, never an unchecked accept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cats_dogs_other.api.auth.github_policy import decide
from cats_dogs_other.api.auth.tokens import KeySource, Principal, TokenValidator
from cats_dogs_other.api.auth.trust_policy import TrustedIssuer, claim_id
from cats_dogs_other.api.errors import (
    InvalidTokenError,
    KeysUnavailableError,
    ServiceUnavailableError,
)
from cats_dogs_other.api.state import StateStore, StateUnavailableError, hashed_key

logger = logging.getLogger(__name__)

# auth_failures_total's reason when a trust-policy issuer's keys cannot be fetched.
POLICY_KEYS_UNAVAILABLE = "trusted_issuer_keys_unavailable"


def github_client_id(claims: dict[str, Any]) -> str:
    """``github:<repository_id>``: the principal's name in logs, and the rate-limit key."""
    return f"github:{claim_id(claims.get('repository_id')) or 'unknown'}"


class GitHubTokenValidator(TokenValidator):
    """A :class:`TokenValidator` for one ``kind: github-actions`` entry of the trust policy."""

    def __init__(
        self,
        keys: KeySource,
        trusted: TrustedIssuer,
        *,
        state: StateStore | None,
        leeway_s: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            keys,
            issuer=trusted.issuer,
            audience=trusted.audience,
            algorithms=trusted.algorithms,
            leeway_s=leeway_s,
            clock=clock,
        )
        self.trusted = trusted
        self._state = state

    async def validate(self, token: str, payload: dict[str, Any] | None = None) -> Principal:
        claims = await self.verified_claims(token, payload)
        client = github_client_id(claims)
        self.check_token(claims, client)
        decision = decide(claims, self.trusted.rules)
        if decision.rule is None:
            logger.info(
                "github token of %s refused by trust policy %r: %s",
                client,
                self.trusted.name,
                decision.failure,
            )
            return Principal(client, frozenset(), issuer_name=self.trusted.name)
        if self.trusted.single_use:
            await self._use_once(claims, client)
        return Principal(client, decision.rule.scopes, issuer_name=self.trusted.name)

    async def verified_claims(
        self, token: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return await super().verified_claims(token, payload)
        except KeysUnavailableError as exc:
            exc.reason = POLICY_KEYS_UNAVAILABLE  # its own metric label: /ready stays up
            raise

    def check_token(self, claims: dict[str, Any], client: str) -> None:
        """Audience (one string), issuer, exp, nbf, iat (required) and the token's age."""
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud != self._audience:
            raise InvalidTokenError(
                "The token is not meant for this API (audience: one string, the API's).",
                reason="invalid_aud",
                client_id=client,
            )
        self._check_claims(claims, client, iat_required=True)
        age = self._clock() - claims["iat"]
        if age > self.trusted.max_token_age_s:
            raise InvalidTokenError(
                f"The token is older than {self.trusted.max_token_age_s} s (iat); ask for a "
                "new one.",
                reason="too_old",
                client_id=client,
            )

    async def _use_once(self, claims: dict[str, Any], client: str) -> None:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidTokenError(
                "The token has no id (jti), so it cannot be used once.",
                reason="missing_jti",
                client_id=client,
            )
        ttl_ms = max(1000, int((claims["exp"] - self._clock() + self._leeway_s) * 1000))
        if self._state is None:
            raise ServiceUnavailableError("Single-use tokens need a state store.")
        try:
            first = await self._state.claim_once(
                hashed_key("oidc-jti", self.trusted.issuer, jti), ttl_ms
            )
        except StateUnavailableError as exc:
            raise ServiceUnavailableError(
                "Single-use tokens cannot be checked right now (state store); retry shortly.",
                retry_after_s=exc.retry_after_s,
            ) from None
        if not first:
            raise InvalidTokenError(
                "This token was already used (single_use); ask for a new one.",
                reason="replay",
                client_id=client,
            )
