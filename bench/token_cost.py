"""``python -m bench.token_cost``: what validating one access token costs the API, warm keys.

Signs a realistic Auth0-style RS256 token with a 2048-bit key made here, serves the key through
an in-memory transport and warms the cache, then times, one call at a time and interleaved,
``TokenValidator.validate`` (Bearer: header checks, key lookup, RSA signature, claims, scopes)
and ``validate`` of a DPoP-bound token followed by ``ProofVerifier.verify`` (DPoP: parsing, key
import, ES256 signature, claims, ``ath``, thumbprint, replay cache). Proofs are signed before
the timing starts: that is the client's cost, not the server's. Prints medians and p99 in
microseconds. ``python -m bench`` records the Bearer median through :func:`token_validation_us`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey
from kto.client.dpop import DPoPKey

from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.auth.tokens import TokenValidator
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.core.dev import DEV_AUDIENCE, SCOPE
from cats_dogs_other.core.dpop import DPOP_ALGORITHMS, ProofVerifier
from cats_dogs_other.core.replay_cache import ReplayCache

ISSUER = "https://tenant.eu.auth0.com/"
AUDIENCE = DEV_AUDIENCE
URL = "https://api.example.test/upload"
WARMUP = 200  # calls of each kind before timing: warm keys and code paths


async def time_calls(
    calls: Mapping[str, Callable[[], Awaitable[object]]], n: int, warmup: int = WARMUP
) -> dict[str, list[float]]:
    """Microseconds of each call, ``n`` times each, interleaved so a noisy moment hits all."""
    for _ in range(warmup):
        for call in calls.values():
            await call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n):
        for name, call in calls.items():
            started = time.perf_counter_ns()
            await call()
            samples[name].append((time.perf_counter_ns() - started) / 1000)
    return samples


def _token(key: RSAKey, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "bench-client@clients",
        "aud": [AUDIENCE, ISSUER + "userinfo"],
        "iat": now,
        "exp": now + 3600,
        "scope": SCOPE,
        "gty": "client-credentials",
        "azp": "bench-client",
        **extra,
    }
    return jwt.encode({"alg": "RS256", "kid": "bench", "typ": "JWT"}, claims, key)


@asynccontextmanager
async def _validator(key: RSAKey) -> AsyncIterator[TokenValidator]:
    """The validator as the API configures it, its keys served from memory (no network)."""
    settings = Settings(
        oauth2_issuer=ISSUER, oauth2_audience=AUDIENCE, oauth2_jwks_uri=".well-known/jwks.json"
    )
    document = {"keys": [key.as_dict(private=False)]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=document))
    async with httpx.AsyncClient(transport=transport) as client:
        yield TokenValidator.from_settings(settings, KeyCache.from_settings(settings, client))


async def measure(n: int, *, dpop: bool = True) -> dict[str, list[float]]:
    """Samples of ``Bearer`` and, with ``dpop``, ``DPoP`` validations, in microseconds."""
    key = RSAKey.generate_key(2048, parameters={"kid": "bench", "alg": "RS256", "use": "sig"})
    bearer = _token(key, permissions=["get::prediction"])
    async with _validator(key) as validator:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "Bearer": lambda: validator.validate(bearer)
        }
        if dpop:
            client_key = DPoPKey()
            bound = _token(key, cnf={"jkt": client_key.jkt})
            url = httpx.URL(URL)
            proofs = iter(
                [client_key.proof("POST", url, access_token=bound) for _ in range(n + WARMUP)]
            )
            verifier = ProofVerifier(
                algorithms=DPOP_ALGORITHMS, replay=ReplayCache(2 * (n + WARMUP))
            )

            async def with_proof() -> None:
                principal = await validator.validate(bound)
                verifier.verify(
                    next(proofs), method="POST", url=URL, access_token=bound, jkt=principal.jkt
                )

            calls["DPoP"] = with_proof
        return await time_calls(calls, n)


def token_validation_us(n: int = 5000) -> float:
    """Median cost of one Bearer validation with warm keys, in microseconds."""
    return statistics.median(asyncio.run(measure(n, dpop=False))["Bearer"])


def _p99(samples: list[float]) -> float:
    return sorted(samples)[int(0.99 * (len(samples) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.token_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--n", type=int, default=5000, help="timed validations of each kind")
    n = parser.parse_args(argv).n
    samples = asyncio.run(measure(n))
    bearer, with_proof = (statistics.median(samples[kind]) for kind in ("Bearer", "DPoP"))
    print(
        f"token validation, warm keys, RS256/2048, n={n}: "
        f"Bearer median {bearer:.1f} us, p99 {_p99(samples['Bearer']):.1f} us; "
        f"DPoP (token + ES256 proof) median {with_proof:.1f} us, "
        f"p99 {_p99(samples['DPoP']):.1f} us; "
        f"added by the proof: {with_proof - bearer:.1f} us per request"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
