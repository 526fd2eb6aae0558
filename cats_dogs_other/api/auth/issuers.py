"""Several trusted issuers: a token's unverified ``iss`` picks ONE from the allow-list.

``OAUTH2_ISSUER`` is always trusted; ``TRUST_POLICY_FILE`` adds entries. Each entry owns its key
cache (rotation, cool-down, outage behaviour of :class:`~cats_dogs_other.api.auth.jwks.KeyCache`),
its algorithms and its claim rules, so a ``kid`` known at one issuer is never looked up at
another, and a token naming an issuer that is not listed is refused before any network request.

The ``iss`` read here is NOT trusted: it only chooses which issuer's keys must have signed the
token; that issuer's validator then checks ``iss`` again, exactly, on the verified claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from cats_dogs_other.api.auth.github_tokens import GitHubTokenValidator
from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.auth.tokens import (
    UNKNOWN_ISSUER,
    Principal,
    TokenValidator,
    unverified_segment,
)
from cats_dogs_other.api.auth.trust_policy import TrustedIssuer
from cats_dogs_other.api.errors import InvalidTokenError
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.state import StateStore


class Verifier(Protocol):
    async def validate(self, token: str, payload: dict[str, Any] | None = None) -> Principal: ...


def unverified_issuer(token: str) -> str:
    """The ``iss`` of a token whose signature is not checked yet (bounded parsing)."""
    return unverified_claims(token)[0]


def unverified_claims(token: str) -> tuple[str, dict[str, Any]]:
    """The ``iss`` and the claims of a token whose signature is not checked yet.

    Parsed by :func:`~cats_dogs_other.api.auth.tokens.unverified_segment`, as the validator parses
    them, so the chosen validator reuses them once the signature over these bytes holds.
    """
    claims = unverified_segment(token, 1)
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        raise InvalidTokenError(UNKNOWN_ISSUER, reason="invalid_iss")
    return issuer, claims


class IssuerRouter:
    """Sends each token to the validator of the issuer it names, or refuses it (401)."""

    def __init__(self, default: TokenValidator, others: Mapping[str, Verifier]) -> None:
        self.default = default
        self._by_issuer: dict[str, Verifier] = {default.issuer: default, **others}

    @property
    def issuers(self) -> frozenset[str]:
        return frozenset(self._by_issuer)

    async def validate(self, token: str, payload: dict[str, Any] | None = None) -> Principal:
        if len(self._by_issuer) == 1:
            return await self.default.validate(token)
        issuer, claims = unverified_claims(token)
        verifier = self._by_issuer.get(issuer)
        if verifier is None:
            raise InvalidTokenError(UNKNOWN_ISSUER, reason="invalid_iss")
        return await verifier.validate(token, claims)


def policy_key_cache(
    trusted: TrustedIssuer, settings: Settings, client: httpx.AsyncClient
) -> KeyCache:
    """The entry's own key cache, with the API's refresh timings and strict discovery."""
    return KeyCache(
        client,
        issuer=trusted.issuer,
        jwks_uri=trusted.jwks_uri,
        discovery_uri=trusted.discovery_uri,
        algorithms=trusted.algorithms,
        ttl_s=settings.jwks_cache_ttl_s,
        cooldown_s=settings.jwks_refresh_cooldown_s,
        timeout_s=settings.jwks_fetch_timeout_s,
        strict_discovery=True,
    )


def build_policy_validators(
    settings: Settings, client: httpx.AsyncClient, state: StateStore | None
) -> tuple[dict[str, GitHubTokenValidator], list[KeyCache]]:
    """One validator and key cache per trust-policy entry (none without TRUST_POLICY_FILE)."""
    policy = settings.trust_policy
    validators: dict[str, GitHubTokenValidator] = {}
    caches: list[KeyCache] = []
    for trusted in policy.issuers if policy else ():
        keys = policy_key_cache(trusted, settings, client)
        caches.append(keys)
        validators[trusted.issuer] = GitHubTokenValidator(
            keys, trusted, state=state, leeway_s=settings.oauth2_leeway_s
        )
    return validators, caches


def describe(policy_validators: Mapping[str, GitHubTokenValidator]) -> list[dict[str, Any]]:
    """What the start-up log says about each trusted entry (no secrets in a policy)."""
    return [
        {
            "name": v.trusted.name,
            "issuer": v.trusted.issuer,
            "rules": len(v.trusted.rules),
            "single_use": v.trusted.single_use,
        }
        for v in policy_validators.values()
    ]
