"""The state stores: in-process, and Redis against a real ``redis-server`` on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from cats_dogs_other.api.settings import ConfigError, load_settings
from cats_dogs_other.api.state import InProcessState, StateUnavailableError, hashed_key
from cats_dogs_other.api.state_redis import RedisState, StoreConfigError
from tests.support.redis_server import RedisServer, fake_store

T = TypeVar("T")
PREFIX = "test:"


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


def redis_state(url: str, timeout_ms: int = 200, **kwargs: Any) -> RedisState:
    return RedisState(url, timeout_ms=timeout_ms, key_prefix=PREFIX, **kwargs)


def test_hashed_key_is_fixed_length_and_length_prefixed() -> None:
    key = hashed_key("dpop", "a" * 1000, "x")
    assert key.startswith("dpop:") and len(key) == len("dpop:") + 64
    assert hashed_key("dpop", "ab", "c") != hashed_key("dpop", "a", "bc")
    assert hashed_key("dpop", "ab", "c") == hashed_key("dpop", "ab", "c")


def test_in_process_claims_once_until_the_ttl_passes() -> None:
    now = [1000.0]
    state = InProcessState(10, clock=lambda: now[0])
    assert run(lambda: state.claim_once("k", 2000)) is True
    assert run(lambda: state.claim_once("k", 2000)) is False
    now[0] += 2.001
    assert run(lambda: state.claim_once("k", 2000)) is True
    assert state.health == "in-process"


def test_in_process_full_of_live_records_is_unavailable_not_forgetful() -> None:
    now = [0.0]
    state = InProcessState(2, clock=lambda: now[0])
    for key in ("a", "b"):
        assert run(lambda key=key: state.claim_once(key, 5000)) is True  # type: ignore[misc]
    with pytest.raises(StateUnavailableError) as caught:
        run(lambda: state.claim_once("c", 5000))
    assert caught.value.retry_after_s == pytest.approx(5.0)
    assert run(lambda: state.claim_once("a", 5000)) is False  # still remembered


def test_redis_claims_once_across_two_stores_and_every_key_has_a_ttl(redis_url: str) -> None:
    async def scenario() -> list[bool]:
        one, two = redis_state(redis_url), redis_state(redis_url)
        try:
            return [
                await one.claim_once("k1", 60_000),
                await two.claim_once("k1", 60_000),
                await two.claim_once("k2", 5_000),
            ]
        finally:
            await one.aclose()
            await two.aclose()

    assert run(scenario) == [True, False, True]
    client = redis_server_client(redis_url)
    ttl = client.pttl(PREFIX + "k1")
    assert 0 < ttl <= 60_000
    for key in client.scan_iter("*"):
        assert client.pttl(key) > 0, key


def test_redis_through_a_unix_socket(redis_server: RedisServer, redis_url: str) -> None:
    async def scenario() -> list[bool]:
        state = redis_state(redis_server.unix_url)
        try:
            return [await state.claim_once("u", 5000), await state.claim_once("u", 5000)]
        finally:
            await state.aclose()

    assert run(scenario) == [True, False]


def redis_server_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def test_redis_down_is_unavailable_within_the_timeout_then_recovers(
    redis_server: RedisServer, redis_url: str
) -> None:
    async def scenario() -> tuple[float, str, str, bool]:
        state = redis_state(redis_url, timeout_ms=100)
        try:
            assert await state.claim_once("before", 60_000) is True
            assert await state.ping() == "ok"
            redis_server.stop()
            started = time.monotonic()
            with pytest.raises(StateUnavailableError):
                await state.claim_once("during", 60_000)
            elapsed = time.monotonic() - started
            down = await state.ping()
            redis_server.start()  # a new process: new run_id, records lost
            assert state.data_lost_at is None
            claimed = await state.claim_once("before", 60_000)
            return elapsed, down, await state.ping(), claimed and state.data_lost_at is not None
        finally:
            await state.aclose()

    elapsed, down, up, restarted = run(scenario)
    assert elapsed < 0.5
    assert (down, up) == ("unavailable", "ok")
    assert restarted  # the lost record is claimable again, and the loss was noticed


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n", b"+OK\r\n" * 4])
def test_a_hanging_or_garbage_store_is_a_timeout_never_a_crash(answer: bytes | None) -> None:
    async def scenario(url: str) -> float:
        state = redis_state(url, timeout_ms=100)
        try:
            started = time.monotonic()
            with pytest.raises(StateUnavailableError):
                await state.claim_once("k", 1000)
            assert await state.ping() == "unavailable"
            return time.monotonic() - started
        finally:
            await state.aclose()

    with fake_store(answer) as url:
        assert asyncio.run(scenario(url)) < 1.0


def test_a_store_that_may_evict_is_refused(redis_server: RedisServer, redis_url: str) -> None:
    client = redis_server.client()
    client.config_set("maxmemory-policy", "allkeys-lru")

    async def scenario() -> str:
        state = redis_state(redis_url)
        try:
            with pytest.raises(StoreConfigError, match="maxmemory-policy is 'allkeys-lru'"):
                await state.check_config()
            health = await state.ping()
            with pytest.raises(StateUnavailableError):
                await state.claim_once("k", 1000)
            return health
        finally:
            await state.aclose()

    try:
        assert run(scenario) == "misconfigured"
    finally:
        client.config_set("maxmemory-policy", "noeviction")


def test_a_policy_fixed_while_running_is_noticed(redis_server: RedisServer, redis_url: str) -> None:
    client = redis_server.client()
    client.config_set("maxmemory-policy", "volatile-lru")

    async def scenario() -> list[str]:
        state = redis_state(redis_url)
        try:
            seen: list[str] = [await state.ping()]
            client.config_set("maxmemory-policy", "noeviction")
            seen.append(await state.ping())
            assert await state.claim_once("k", 1000) is True
            return seen
        finally:
            await state.aclose()

    try:
        assert run(scenario) == ["misconfigured", "ok"]
    finally:
        client.config_set("maxmemory-policy", "noeviction")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"state_url": "http://127.0.0.1:6379"}, "STATE_URL"),
        ({"rate_limit": "lots"}, "RATE_LIMIT"),
        ({"rate_limit": "0/minute"}, "RATE_LIMIT"),
        ({"rate_limits_by_client": "[1]"}, "RATE_LIMITS_BY_CLIENT"),
        ({"rate_limits_by_client": '{"oauth2:a": "x/y"}'}, "RATE_LIMITS_BY_CLIENT"),
        ({"rate_limit": "10/minute", "workers": 2}, "RATE_LIMIT"),
    ],
)
def test_malformed_state_and_limit_settings_are_one_line_errors(
    env: dict[str, Any], names: str
) -> None:
    base = {"oauth2_issuer": "https://issuer.example/", "oauth2_audience": "api"}
    with pytest.raises(ConfigError) as caught:
        load_settings(**base, **env)
    message = str(caught.value)
    assert "\n" not in message and names in message


def test_limits_with_workers_are_fine_with_a_shared_store() -> None:
    settings = load_settings(
        oauth2_issuer="https://issuer.example/",
        oauth2_audience="api",
        rate_limit="10/minute",
        rate_limits_by_client='{"oauth2:a": "5/second"}',
        workers=2,
        state_url="redis://127.0.0.1:1/0",
    )
    assert settings.client_limits == {"oauth2:a": "5/second"}


def test_workers_without_a_shared_store_warn_about_dpop(caplog: pytest.LogCaptureFixture) -> None:
    from cats_dogs_other.api.startup import warn_unshared_state

    base = {"oauth2_issuer": "https://issuer.example/", "oauth2_audience": "api"}
    warn_unshared_state(load_settings(**base, workers=2, state_url="redis://127.0.0.1:1/0"))
    warn_unshared_state(load_settings(**base, workers=1))
    assert not caplog.records
    warn_unshared_state(load_settings(**base, workers=2))
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "STATE_URL" in record.getMessage()


def test_a_missing_redis_server_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support import redis_server as support

    monkeypatch.setattr(support.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="install-services"):
        support.require_redis_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        support.require_redis_server()
