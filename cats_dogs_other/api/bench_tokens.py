"""Micro-benchmark: the cost of validating one access token with warm keys.

Run ``python -m cats_dogs_other.api.bench_tokens [--n 5000]``. It signs a realistic Auth0-style
RS256 token with a 2048-bit key made here, serves the key through an in-memory transport, warms
the cache, then times ``TokenValidator.validate`` (header checks, key lookup, RSA signature,
claims, scope parsing) one call at a time and prints the median and tail in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from cats_dogs_other.api.jwks import KeyCache
from cats_dogs_other.api.tokens import TokenValidator

ISSUER = "https://tenant.eu.auth0.com/"
AUDIENCE = "https://cats-dogs-other.local"


async def measure(n: int) -> list[float]:
    key = RSAKey.generate_key(2048, parameters={"kid": "bench", "alg": "RS256", "use": "sig"})
    document = {"keys": [key.as_dict(private=False)]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=document))
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "bench-client@clients",
        "aud": [AUDIENCE, ISSUER + "userinfo"],
        "iat": now,
        "exp": now + 3600,
        "scope": "get::prediction",
        "gty": "client-credentials",
        "azp": "bench-client",
        "permissions": ["get::prediction"],
    }
    token = jwt.encode({"alg": "RS256", "kid": "bench", "typ": "JWT"}, claims, key)
    async with httpx.AsyncClient(transport=transport) as client:
        cache = KeyCache(
            client,
            issuer=ISSUER,
            jwks_uri=ISSUER + ".well-known/jwks.json",
            discovery_uri=ISSUER + ".well-known/openid-configuration",
            algorithms=["RS256"],
        )
        validator = TokenValidator(cache, issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])
        for _ in range(200):  # warm keys and code paths
            await validator.validate(token)
        samples = []
        for _ in range(n):
            started = time.perf_counter_ns()
            await validator.validate(token)
            samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="timed validations")
    n = parser.parse_args().n
    samples = sorted(asyncio.run(measure(n)))
    p99 = samples[int(0.99 * (len(samples) - 1))]
    print(
        f"token validation, warm keys, RS256/2048, n={n}: "
        f"median {statistics.median(samples):.1f} us, p99 {p99:.1f} us, "
        f"mean {statistics.fmean(samples):.1f} us"
    )


if __name__ == "__main__":
    main()
