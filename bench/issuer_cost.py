"""``python -m bench.issuer_cost``: what a second trusted issuer costs token validation, warm keys.

Three validations, timed one call at a time and interleaved (:func:`bench.token_cost.time_calls`):

* ``auth0, one issuer``: the API without ``TRUST_POLICY_FILE`` (the router hands every token to
  the ``OAUTH2_ISSUER`` validator without reading it);
* ``auth0, two issuers``: the same token with a GitHub Actions entry trusted beside it (the
  unverified ``iss`` is read to choose the validator);
* ``github, two issuers``: a GitHub-shaped token through the same router (aud, iat age and the
  claim policy's rules, the matching rule being the third).

Keys are RSA 2048 made here and served from memory; prints medians and p99 in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from joserfc.jwk import RSAKey

from bench.token_cost import AUDIENCE, ISSUER, _p99, _token, time_calls
from cats_dogs_other.api.auth.issuers import IssuerRouter, policy_key_cache
from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.auth.tokens import TokenValidator
from cats_dogs_other.api.auth.trust_policy import parse_trust_policy
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.state import InProcessState
from cats_dogs_other.dev_issuer.github import job_claims

GITHUB = "https://token.actions.githubusercontent.com"


def _rule(repo: int) -> dict[str, object]:
    return {"repository_id": repo, "repository_owner_id": 987654, "scopes": ["get::prediction"]}


async def measure(n: int) -> dict[str, list[float]]:
    auth0_key = RSAKey.generate_key(2048, parameters={"kid": "bench", "alg": "RS256"})
    github_key = RSAKey.generate_key(2048, parameters={"kid": "gh", "alg": "RS256"})
    documents = {
        "tenant.eu.auth0.com": {"keys": [auth0_key.as_dict(private=False)]},
        "token.actions.githubusercontent.com": {"keys": [github_key.as_dict(private=False)]},
    }
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=documents[r.url.host]))
    settings = Settings(
        oauth2_issuer=ISSUER, oauth2_audience=AUDIENCE, oauth2_jwks_uri=".well-known/jwks.json"
    )
    document = {
        "issuers": [
            {
                "name": "github-actions",
                "kind": "github-actions",
                "issuer": GITHUB,
                "jwks_uri": GITHUB + "/.well-known/jwks",
                "rules": [_rule(111), _rule(222), _rule(123456789)],
            }
        ]
    }
    (entry,) = parse_trust_policy(document, Path("bench"), AUDIENCE, ISSUER).issuers
    from cats_dogs_other.api.auth.github_tokens import GitHubTokenValidator

    auth0_token = _token(auth0_key, permissions=["get::prediction"])
    github_token = _sign(github_key, job_claims(GITHUB, AUDIENCE))
    async with httpx.AsyncClient(transport=transport) as client:
        auth0 = TokenValidator.from_settings(settings, KeyCache.from_settings(settings, client))
        github = GitHubTokenValidator(
            policy_key_cache(entry, settings, client), entry, state=InProcessState(10)
        )
        one, two = IssuerRouter(auth0, {}), IssuerRouter(auth0, {GITHUB: github})
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "auth0, one issuer": lambda: one.validate(auth0_token),
            "auth0, two issuers": lambda: two.validate(auth0_token),
            "github, two issuers": lambda: two.validate(github_token),
        }
        return await time_calls(calls, n)


def _sign(key: RSAKey, claims: dict[str, object]) -> str:
    from joserfc import jwt

    return jwt.encode({"alg": "RS256", "kid": "gh", "typ": "JWT"}, claims, key)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.issuer_cost", description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="timed calls of each kind")
    args = parser.parse_args(argv)
    samples = asyncio.run(measure(args.n))
    base = statistics.median(samples["auth0, one issuer"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(
            f"{name:<22} median {median:7.1f} us   p99 {_p99(values):7.1f} us   "
            f"({median - base:+.1f} us vs one issuer)"
        )


if __name__ == "__main__":
    main()
