"""Median cost of validating one token with warm keys, in microseconds.

Uses ``python -m cats_dogs_other.api.bench_tokens`` (the API's own micro-benchmark) when it
exists; otherwise times the API's ``TokenValidator`` here, with its keys already cached.
Runs in a subprocess so the harness's own threads do not disturb it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import time

from bench.workload import REPO_ROOT

_NUMBER = re.compile(r"median[^0-9]*([0-9]+(?:\.[0-9]+)?)\s*(?:µs|us)", re.IGNORECASE)


def token_validation_us(notes: list[str]) -> float | None:
    module = "cats_dogs_other.api.bench_tokens"
    if importlib.util.find_spec(module) is None:
        module = "bench.tokens"
        notes.append("token validation timed by bench/tokens.py (no api/bench_tokens.py yet)")
    try:
        done = subprocess.run(
            [sys.executable, "-m", module], cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        notes.append(f"{module} timed out")
        return None
    match = _NUMBER.search(done.stdout)
    if done.returncode != 0 or match is None:
        notes.append(f"{module} gave no median (rc {done.returncode}): {done.stderr[-300:]!r}")
        return None
    return float(match.group(1))


async def _time_validator(samples: int = 3000) -> float:
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from cats_dogs_other.api.tokens import TokenValidator

    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256"})
    public = RSAKey.import_key(key.as_dict(private=False))

    class WarmKeys:
        async def get(self, kid: str) -> RSAKey:
            return public

    issuer, audience = "https://issuer.example/", "https://api.example"
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": "c@clients", "azp": "c", "iat": now,
              "exp": now + 3600, "scope": "get::prediction"}  # fmt: skip
    token = jwt.encode({"alg": "RS256", "kid": "k1", "typ": "JWT"}, claims, key)
    validator = TokenValidator(WarmKeys(), issuer=issuer, audience=audience, algorithms=["RS256"])  # type: ignore[arg-type]
    for _ in range(200):
        await validator.validate(token)
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        await validator.validate(token)
        timings.append((time.perf_counter() - started) * 1e6)
    return statistics.median(timings)


def main() -> None:
    median_us = asyncio.run(_time_validator())
    print(json.dumps({"median_us": round(median_us, 1)}))
    print(f"median token validation (warm keys): {median_us:.1f} us")


if __name__ == "__main__":
    main()
