"""Two app instances sharing one real ``redis-server`` (STATE_URL): DPoP replay across them,
failing closed when Redis dies, Bearer unaffected, recovery, and /health from the background
ping. Each instance has its own lifespan and connection pool, as two replicas would."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cats_dogs_other.api import startup
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.startup import StartupError
from cats_dogs_other.testing.issuer import FakeIssuer
from tests.api.support import bearer, dpop, running_app, two_replicas
from tests.dpop_proofs import ProofSigner
from tests.support.redis_server import RedisServer, fake_store

URL = "http://testserver/model"
WAIT_S = 10.0


@pytest.fixture
def replicas(
    make_settings: Callable[..., Settings], module_issuer: FakeIssuer, redis_url: str
) -> Iterator[tuple[TestClient, TestClient]]:
    settings = make_settings(state_url=redis_url, state_timeout_ms=200)
    with two_replicas(settings, module_issuer) as both:
        yield both


def wait_for(check: Callable[[], Any]) -> Any:
    """Poll ``check`` until it returns something true, within WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {WAIT_S} s")


def test_a_proof_accepted_by_one_replica_is_a_replay_at_the_other(
    replicas: tuple[TestClient, TestClient], bound_token: str, signer: ProofSigner
) -> None:
    one, two = replicas
    proof = signer.proof("GET", URL, access_token=bound_token)
    assert one.get("/model", headers=dpop(bound_token, proof)).status_code == 200
    replayed = two.get("/model", headers=dpop(bound_token, proof))
    assert replayed.status_code == 401
    assert "already used" in replayed.json()["detail"]
    assert 'error="invalid_dpop_proof"' in replayed.headers["WWW-Authenticate"] + ",".join(
        replayed.headers.get_list("WWW-Authenticate")
    )
    assert (
        'cats_dogs_other_auth_failures_total{reason="dpop_replay"} 1.0' in two.get("/metrics").text
    )
    fresh = signer.proof("GET", URL, access_token=bound_token)
    assert two.get("/model", headers=dpop(bound_token, fresh)).status_code == 200


def test_every_replay_key_is_hashed_and_expires(
    replicas: tuple[TestClient, TestClient],
    bound_token: str,
    signer: ProofSigner,
    redis_server: RedisServer,
) -> None:
    one, _ = replicas
    for _ in range(3):
        proof = signer.proof("GET", URL, access_token=bound_token, claims={"jti": "x" * 256})
        one.get("/model", headers=dpop(bound_token, proof))
    client = redis_server.client()
    keys = list(client.scan_iter("*"))
    assert keys, "nothing was recorded"
    for key in keys:
        assert key.startswith(b"cdo:dpop:") and len(key) == len("cdo:dpop:") + 64
        assert 0 < client.pttl(key) <= (60 + 5) * 1000


def test_redis_down_fails_closed_for_dpop_only_then_recovers(
    replicas: tuple[TestClient, TestClient],
    bound_token: str,
    signer: ProofSigner,
    module_issuer: FakeIssuer,
    redis_server: RedisServer,
) -> None:
    one, two = replicas
    token = module_issuer.token()
    assert one.get("/health").json() == {"status": "OK", "state_store": "ok"}
    redis_server.stop()
    started = time.monotonic()
    refused = one.get(
        "/model", headers=dpop(bound_token, signer.proof("GET", URL, access_token=bound_token))
    )
    assert refused.status_code == 503, refused.text
    assert time.monotonic() - started < 2.0
    assert int(refused.headers["Retry-After"]) >= 1
    assert "replay store is unavailable" in refused.json()["detail"]
    assert one.get("/model", headers=bearer(token)).status_code == 200
    assert one.get("/ready").status_code == 200
    wait_for(lambda: one.get("/health").json()["state_store"] == "unavailable")
    assert "cats_dogs_other_state_store_up 0.0" in one.get("/metrics").text
    assert 'cats_dogs_other_state_store_errors_total{use="dpop"} 1.0' in one.get("/metrics").text

    redis_server.start()  # empty: every record was lost
    restarted_at = time.time()

    def accepted() -> bool:
        proof = signer.proof("GET", URL, access_token=bound_token, claims={"iat": time.time()})
        return two.get("/model", headers=dpop(bound_token, proof)).status_code == 200

    wait_for(accepted)
    assert time.time() - restarted_at < 3.0
    wait_for(lambda: one.get("/health").json()["state_store"] == "ok")


def test_a_proof_from_before_the_store_lost_its_data_is_refused(
    replicas: tuple[TestClient, TestClient],
    bound_token: str,
    signer: ProofSigner,
    redis_server: RedisServer,
) -> None:
    one, _ = replicas
    captured = signer.proof("GET", URL, access_token=bound_token, claims={"iat": time.time()})
    assert one.get("/model", headers=dpop(bound_token, captured)).status_code == 200
    redis_server.stop()
    redis_server.start()  # the record of ``captured`` is gone with the old process
    replayed = one.get("/model", headers=dpop(bound_token, captured))
    assert replayed.status_code == 503
    assert "restarted and lost its records" in replayed.json()["detail"]
    assert int(replayed.headers["Retry-After"]) >= 1
    fresh = signer.proof("GET", URL, access_token=bound_token, claims={"iat": time.time()})
    assert one.get("/model", headers=dpop(bound_token, fresh)).status_code == 200


@pytest.mark.parametrize(
    "answer", [None, b"HTTP/1.1 200 OK\r\n\r\n<html>"], ids=["hangs", "garbage"]
)
def test_a_hanging_or_garbage_store_is_a_503_for_dpop_and_nothing_for_bearer(
    make_settings: Callable[..., Settings],
    module_issuer: FakeIssuer,
    bound_token: str,
    signer: ProofSigner,
    answer: bytes | None,
) -> None:
    with fake_store(answer) as url:
        settings = make_settings(state_url=url, state_timeout_ms=100, rate_limit="2/minute")
        with running_app(settings, module_issuer) as app:
            started = time.monotonic()
            proof = signer.proof("GET", URL, access_token=bound_token)
            refused = app.get("/model", headers=dpop(bound_token, proof))
            assert refused.status_code == 503 and "Retry-After" in refused.headers
            assert time.monotonic() - started < 1.0
            assert app.get("/model", headers=bearer(module_issuer.token())).status_code == 200
            assert app.get("/ready").status_code == 200
            wait_for(lambda: app.get("/health").json()["state_store"] == "unavailable")


def test_a_store_that_may_evict_stops_the_start_up_with_one_sentence(
    make_settings: Callable[..., Settings],
    module_issuer: FakeIssuer,
    redis_server: RedisServer,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(startup, "_failure", None)  # restored after: the failure is recorded
    client = redis_server.client()
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with (
            pytest.raises(StartupError) as caught,
            running_app(make_settings(state_url=redis_url), module_issuer),
        ):
            pass
    finally:
        client.config_set("maxmemory-policy", "noeviction")
    assert caught.value.setting == "STATE_URL"
    assert "maxmemory-policy is 'allkeys-lru'" in caught.value.sentence
    assert "\n" not in caught.value.sentence


@pytest.mark.parametrize(("age_s", "expected_ttl_s"), [(50, 15), (-30, 95), (59.5, 5.5)])
def test_a_record_lives_until_its_proof_expires_everywhere(
    replicas: tuple[TestClient, TestClient],
    bound_token: str,
    signer: ProofSigner,
    redis_server: RedisServer,
    age_s: float,
    expected_ttl_s: float,
) -> None:
    """PX = iat + DPOP_IAT_WINDOW_S (60) + STATE_CLOCK_SKEW_S (5) - now: a future-dated iat
    gets a longer record, so it cannot outlive its key."""
    one, _ = replicas
    claims = {"iat": time.time() - age_s}
    proof = signer.proof("GET", URL, access_token=bound_token, claims=claims)
    assert one.get("/model", headers=dpop(bound_token, proof)).status_code == 200
    client = redis_server.client()
    (key,) = list(client.scan_iter("cdo:dpop:*"))
    assert abs(client.pttl(key) / 1000 - expected_ttl_s) < 1.0
