"""SHUTDOWN_DRAIN_S: on SIGTERM /ready answers 503 while requests are still served, then the
graceful stop. A unit test of the signal wrapper, and ``python boot.py`` as a real process
with a real redis-server as its STATE_URL (replica id on every log line, store in /health)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from types import FrameType

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from cats_dogs_other.api.draining import Drain
from cats_dogs_other.testing.issuer import valid_claims
from tests.api.support import start_boot

DRAIN_S = 3.0


def test_sigterm_starts_the_drain_and_hands_over_after_it() -> None:
    async def scenario() -> tuple[bool, float, bool]:
        handed = asyncio.Event()

        def uvicorns(signum: int, frame: FrameType | None) -> None:
            handed.set()  # called from the loop, after the drain

        previous = signal.signal(signal.SIGTERM, uvicorns)
        drain = Drain(0.2)
        try:
            assert drain.install(asyncio.get_running_loop())
            started = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.05)
            draining_at_once = drain.draining and not handed.is_set()
            await asyncio.wait_for(handed.wait(), timeout=5)
            waited = time.monotonic() - started
            drain.uninstall()
            return draining_at_once, waited, signal.getsignal(signal.SIGTERM) is uvicorns
        finally:
            drain.uninstall()
            signal.signal(signal.SIGTERM, previous)

    draining_at_once, waited, restored = asyncio.run(scenario())
    assert draining_at_once and restored
    assert 0.2 <= waited < 2.0


def test_no_drain_configured_leaves_the_handler_alone() -> None:
    async def scenario() -> bool:
        return Drain(0).install(asyncio.get_running_loop())

    assert asyncio.run(scenario()) is False


def test_boot_drains_on_sigterm_with_a_shared_store(
    repo_root: Path,
    loopback_issuer: str,
    rsa_keys: dict[str, RSAKey],
    tiny_model: Path,
    images: dict[str, bytes],
    redis_url: str,
    tmp_path: Path,
) -> None:
    claims = valid_claims(iss=loopback_issuer, sub="drain@clients", azp="drain")
    token = jwt.encode({"alg": "RS256", "kid": "key-1"}, claims, rsa_keys["key-1"])
    api, base = start_boot(
        repo_root,
        loopback_issuer,
        tiny_model,
        tmp_path,
        STATE_URL=redis_url,
        RATE_LIMIT="100/minute",
        REPLICA_ID="replica-boot",
        SHUTDOWN_DRAIN_S=str(DRAIN_S),
    )
    upload = {"file": ("red.png", images["red"], "image/png")}
    try:
        api.wait_http(base + "/ready", timeout_s=90, interval_s=0.3)
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").json()["state_store"] == "ok"
            api.signal(signal.SIGTERM)
            signalled = time.monotonic()
            while http.get("/ready").status_code == 200:
                assert time.monotonic() - signalled < 2.0, "/ready kept answering 200"
                time.sleep(0.05)
            assert "shutting down" in http.get("/ready").json()["reason"]
            served = http.post(
                "/upload", headers={"Authorization": f"Bearer {token}"}, files=upload
            )
            assert served.status_code == 200  # still serving while draining
            assert served.headers["RateLimit-Policy"] == '"images";q=100;w=60'
            assert time.monotonic() - signalled < DRAIN_S
        code = api.wait(timeout_s=DRAIN_S + 30)
        stopped_after = time.monotonic() - signalled
    finally:
        api.stop(grace_s=30)
    assert code in (0, -signal.SIGTERM)
    assert stopped_after >= DRAIN_S - 0.5
    entries = [json.loads(line) for line in api.output().splitlines()]
    assert entries and all(e.get("replica_id") == "replica-boot" for e in entries)
    assert any(e.get("event") == "draining" for e in entries)
