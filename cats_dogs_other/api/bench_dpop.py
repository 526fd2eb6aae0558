"""Micro-benchmark: what a DPoP proof adds to validating one access token, with warm keys.

Run ``python -m cats_dogs_other.api.bench_dpop [--n 5000]``. It builds the same RS256 token as
:mod:`cats_dogs_other.api.bench_tokens`, bound to a P-256 key made here, signs ``n`` fresh
proofs before timing (a client's cost, not the server's), then times, one call at a time and
interleaved, ``TokenValidator.validate`` alone (Bearer) and ``validate`` followed by
``ProofVerifier.verify`` (DPoP: parsing, key import, ES256 signature, claims, ``ath``,
thumbprint, replay cache). Prints the medians in microseconds and their difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from cats_dogs_other.api.bench_tokens import AUDIENCE, ISSUER
from cats_dogs_other.api.dpop import DPOP_ALGORITHMS, ProofVerifier
from cats_dogs_other.api.dpop_proofs import ProofSigner
from cats_dogs_other.api.jwks import KeyCache
from cats_dogs_other.api.replay_cache import ReplayCache
from cats_dogs_other.api.tokens import TokenValidator

URL = "https://api.example.test/upload"


async def measure(n: int) -> tuple[list[float], list[float]]:
    key = RSAKey.generate_key(2048, parameters={"kid": "bench", "alg": "RS256", "use": "sig"})
    document = {"keys": [key.as_dict(private=False)]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=document))
    signer = ProofSigner()
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
        "cnf": {"jkt": signer.jkt},
    }
    token = jwt.encode({"alg": "RS256", "kid": "bench", "typ": "JWT"}, claims, key)
    warmup = 200
    proofs = [signer.proof("POST", URL, access_token=token) for _ in range(n + warmup)]
    verifier = ProofVerifier(algorithms=DPOP_ALGORITHMS, replay=ReplayCache(2 * (n + warmup)))
    async with httpx.AsyncClient(transport=transport) as client:
        cache = KeyCache(
            client,
            issuer=ISSUER,
            jwks_uri=ISSUER + ".well-known/jwks.json",
            discovery_uri=ISSUER + ".well-known/openid-configuration",
            algorithms=["RS256"],
        )
        validator = TokenValidator(cache, issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])

        async def dpop(proof: str) -> None:
            principal = await validator.validate(token)
            verifier.verify(proof, method="POST", url=URL, access_token=token, jkt=principal.jkt)

        for proof in proofs[:warmup]:
            await validator.validate(token)
            await dpop(proof)
        bearer_us, dpop_us = [], []
        for proof in proofs[warmup:]:
            started = time.perf_counter_ns()
            await validator.validate(token)
            bearer_us.append((time.perf_counter_ns() - started) / 1000)
            started = time.perf_counter_ns()
            await dpop(proof)
            dpop_us.append((time.perf_counter_ns() - started) / 1000)
    return bearer_us, dpop_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="timed validations of each kind")
    n = parser.parse_args().n
    bearer_us, dpop_us = asyncio.run(measure(n))
    bearer, with_proof = statistics.median(bearer_us), statistics.median(dpop_us)
    p99 = sorted(dpop_us)[int(0.99 * (len(dpop_us) - 1))]
    print(
        f"token validation, warm keys, RS256/2048, n={n}: Bearer median {bearer:.1f} us; "
        f"DPoP (token + ES256 proof) median {with_proof:.1f} us, p99 {p99:.1f} us; "
        f"added by the proof: {with_proof - bearer:.1f} us per request"
    )


if __name__ == "__main__":
    main()
