"""The RateLimiter on in-process storage, and failing open on a store that cannot be reached (a
closed loopback port): the charge, the 429 and 422 it raises and the headers they carry. The
same limiter over a real redis-server and HTTP is in test_rate_limits.py."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import pytest
from limits.aio.storage import MemoryStorage
from redis.asyncio import ConnectionPool

from cats_dogs_other.api.auth.tokens import Principal
from cats_dogs_other.api.errors import BatchOverLimitError, RateLimitedError
from cats_dogs_other.api.rate_limits import RateLimiter, client_key
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.loopback import LOOPBACK


def limiter(default: str | None = "3/minute", **overrides: str) -> RateLimiter:
    return RateLimiter(default, overrides, storage=MemoryStorage(), timeout_s=1.0)


def test_client_keys_name_the_issuer() -> None:
    assert client_key(Principal("abc", frozenset())) == "oauth2:abc"
    assert client_key(Principal("abc", frozenset()), "auth0") == "auth0:abc"
    github = Principal("github:1234", frozenset(), issuer_name="github")
    assert client_key(github) == "github:1234"


def test_images_are_charged_until_the_limit_then_refused_with_headers() -> None:
    limited: list[None] = []
    rl = RateLimiter(
        "3/minute",
        {},
        storage=MemoryStorage(),
        timeout_s=1.0,
        count_limited=lambda: limited.append(None),
    )

    async def scenario() -> RateLimitedError:
        assert await rl.charge("oauth2:a", 2) is not None
        assert await rl.precheck("oauth2:a") is not None  # one image left
        await rl.charge("oauth2:a", 1)
        with pytest.raises(RateLimitedError) as caught:
            await rl.precheck("oauth2:a")
        return caught.value

    error = asyncio.run(scenario())
    assert error.status_code == 429 and error.limit == "3/minute" and limited == [None]
    assert "your limit is 3/minute (RATE_LIMIT)" in str(error)
    headers = error.headers()
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["RateLimit-Policy"] == '"images";q=3;w=60'
    assert headers["RateLimit"] == f'"images";r=0;t={headers["Retry-After"]}'
    assert error.body() == {"limit": "3/minute"}


def test_a_batch_that_does_not_fit_charges_nothing() -> None:
    rl = limiter("3/minute")

    async def scenario() -> None:
        await rl.charge("oauth2:a", 2)
        with pytest.raises(RateLimitedError):
            await rl.charge("oauth2:a", 2)  # all or nothing: 2 + 2 > 3
        await rl.charge("oauth2:a", 1)  # the refused batch left its room

    asyncio.run(scenario())


def test_a_batch_larger_than_the_whole_limit_is_a_422_naming_the_setting() -> None:
    rl = limiter("3/second", **{"oauth2:small": "2/minute"})
    with pytest.raises(BatchOverLimitError) as caught:
        asyncio.run(rl.charge("oauth2:a", 4))
    assert "allows 3 per second (RATE_LIMIT=3/second)" in str(caught.value)
    with pytest.raises(BatchOverLimitError) as caught:
        asyncio.run(rl.charge("oauth2:small", 3))
    assert "per 60 s (RATE_LIMITS_BY_CLIENT=2/minute)" in str(caught.value)
    assert caught.value.body() == {"limit": "2/minute"}


def test_overrides_win_and_clients_are_counted_apart() -> None:
    rl = limiter(None, **{"oauth2:ci": "1/minute"})

    async def scenario() -> None:
        assert await rl.charge("oauth2:other", 100) is None  # no default: unlimited
        assert await rl.precheck("oauth2:other") is None
        limit = await rl.charge("oauth2:ci", 1)
        assert limit is not None and limit.setting == "RATE_LIMITS_BY_CLIENT"
        with pytest.raises(RateLimitedError):
            await rl.charge("oauth2:ci", 1)

    asyncio.run(scenario())


def test_no_limit_configured_means_no_limiter(make_settings: Callable[..., Settings]) -> None:
    assert RateLimiter.from_settings(make_settings()) is None
    overrides = json.dumps({"oauth2:ci": "5/second"})
    rl = RateLimiter.from_settings(make_settings(rate_limits_by_client=overrides))
    assert rl is not None and rl.limit_for("oauth2:ci") is not None
    assert rl.limit_for("oauth2:else") is None


def test_an_unreachable_store_fails_open_and_is_counted(
    make_settings: Callable[..., Settings],
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    errors: list[str] = []

    async def scenario() -> None:
        pool = ConnectionPool.from_url(f"redis://{LOOPBACK}:{port}/0", socket_timeout=0.5)
        settings = make_settings(rate_limit="1/minute", state_timeout_ms=2000)
        rl = RateLimiter.from_settings(settings, pool, count_store_error=errors.append)
        assert rl is not None
        try:
            for _ in range(3):  # over the limit, yet served while the store is down
                assert await rl.charge("oauth2:a", 1) is not None
        finally:
            await pool.disconnect()

    asyncio.run(scenario())
    assert errors == ["rate_limit"] * 3
