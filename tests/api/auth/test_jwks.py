"""The key cache: rotation, removal, rate-limited refetch, single flight, outages, garbage.

Unit tests drive KeyCache with a fake clock (no sleeping); the HTTP tests at the end run the
whole app against the fake issuer.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.errors import InvalidTokenError, KeysUnavailableError
from cats_dogs_other.testing.issuer import ISSUER, JWKS_PATH, FakeIssuer
from cats_dogs_other.testing.jose import random_kid
from tests.api.support import bearer, running_app


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_cache(issuer: FakeIssuer, clock: FakeClock, *, discovery: bool = False, **kw):
    import httpx

    client = httpx.AsyncClient(transport=kw.get("transport", issuer.transport))
    cache = KeyCache(
        client,
        issuer=ISSUER,
        jwks_uri=None if discovery else ISSUER + JWKS_PATH.lstrip("/"),
        discovery_uri=ISSUER + ".well-known/openid-configuration",
        algorithms=["RS256"],
        ttl_s=kw.get("ttl_s", 600.0),
        cooldown_s=kw.get("cooldown_s", 30.0),
        clock=clock,
    )
    return client, cache


def run(coro):
    return asyncio.run(coro)


def test_rotated_in_key_is_fetched_on_first_sight(issuer: FakeIssuer) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock)
        assert (await cache.get("key-1", "RS256")).kid == "key-1"
        clock.now += 31  # past the cooldown, well within the TTL
        issuer.published = ["key-1", "key-2"]
        assert (await cache.get("key-2", "RS256")).kid == "key-2"
        assert issuer.jwks_fetches == 2
        await client.aclose()

    run(scenario())


def test_removed_key_is_refused_after_refresh(issuer: FakeIssuer) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock)
        await cache.get("key-1", "RS256")
        clock.now += 31
        issuer.published = ["key-2"]
        await cache.get("key-2", "RS256")  # the rotation is seen...
        with pytest.raises(InvalidTokenError):
            await cache.get("key-1", "RS256")  # ...and the retired key is gone
        await client.aclose()

    run(scenario())


def test_unknown_kid_flood_is_single_flight_and_rate_limited(issuer: FakeIssuer) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock)
        await cache.get("key-1", "RS256")
        clock.now += 31
        results = await asyncio.gather(
            *(cache.get(random_kid(), "RS256") for _ in range(200)), return_exceptions=True
        )
        assert all(isinstance(r, InvalidTokenError) for r in results)
        assert issuer.jwks_fetches == 2  # 200 concurrent unknown kids: one shared refetch
        for _ in range(50):  # within the cooldown: none
            with pytest.raises(InvalidTokenError):
                await cache.get(random_kid(), "RS256")
        assert issuer.jwks_fetches == 2
        clock.now += 31
        with pytest.raises(InvalidTokenError):
            await cache.get(random_kid(), "RS256")
        assert issuer.jwks_fetches == 3  # the next cooldown window allows exactly one more
        await client.aclose()

    run(scenario())


def test_requests_arriving_during_a_slow_refresh_wait_for_it(issuer: FakeIssuer) -> None:
    """A rotated-in kid seen by 50 requests at once: one fetch, and all 50 get the key."""
    import httpx

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)  # the refresh is in flight while the others arrive
        return issuer.transport.handle_request(request)

    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock, transport=httpx.MockTransport(slow))
        await cache.get("key-1", "RS256")
        clock.now += 31
        issuer.published = ["key-1", "key-2"]
        found = await asyncio.gather(*(cache.get("key-2", "RS256") for _ in range(50)))
        assert {key.kid for key in found} == {"key-2"}
        assert issuer.jwks_fetches == 2
        await client.aclose()

    run(scenario())


def test_cold_start_with_issuer_down_is_unavailable_then_recovers(issuer: FakeIssuer) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock)
        issuer.up = False
        with pytest.raises(KeysUnavailableError) as caught:
            await cache.get("key-1", "RS256")
        assert 1 <= caught.value.retry_after_s <= 30
        issuer.up = True
        with pytest.raises(KeysUnavailableError):  # still within the cooldown: no new attempt
            await cache.get("key-1", "RS256")
        clock.now += 30
        assert (await cache.get("key-1", "RS256")).kid == "key-1"
        await client.aclose()

    run(scenario())


def test_failed_refresh_keeps_cached_keys(issuer: FakeIssuer) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock, ttl_s=60)
        await cache.get("key-1", "RS256")
        issuer.up = False
        clock.now += 120  # TTL expired: a background refresh is attempted and fails
        assert (await cache.get("key-1", "RS256")).kid == "key-1"
        await asyncio.sleep(0.01)
        assert cache.last_error is not None
        assert (await cache.get("key-1", "RS256")).kid == "key-1"
        await client.aclose()

    run(scenario())


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"keys": "nope"}', b'{"keys": []}', b'{"keys": [{"kty": "RSA"}]}'],
    ids=["not-json", "array", "keys-not-list", "empty", "key-without-kid"],
)
def test_garbage_jwks_keeps_cached_keys(issuer: FakeIssuer, body: bytes) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock)
        await cache.get("key-1", "RS256")
        clock.now += 31
        issuer.jwks_body = body
        with pytest.raises(InvalidTokenError):
            await cache.get("key-2", "RS256")  # refetch happens, yields nothing usable
        assert issuer.jwks_fetches == 2
        assert (await cache.get("key-1", "RS256")).kid == "key-1"
        await client.aclose()

    run(scenario())


def test_ttl_expiry_refreshes_in_background(issuer: FakeIssuer) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock, ttl_s=600)
        await cache.get("key-1", "RS256")
        clock.now += 601
        issuer.published = ["key-1", "key-2"]
        await cache.get("key-1", "RS256")  # served from cache at once, refresh started
        await asyncio.sleep(0.01)
        assert cache.kids == {"key-1", "key-2"}
        await cache.aclose()
        await client.aclose()

    run(scenario())


def test_discovery_finds_the_jwks_uri(issuer: FakeIssuer) -> None:
    async def scenario() -> None:
        client, cache = make_cache(issuer, FakeClock(), discovery=True)
        assert (await cache.get("key-1", "RS256")).kid == "key-1"
        paths = [r.url.path for r in issuer.requests]
        assert paths == ["/.well-known/openid-configuration", JWKS_PATH]
        await client.aclose()

    run(scenario())


def test_discovery_with_another_issuer_is_refused(issuer: FakeIssuer) -> None:
    async def scenario() -> None:
        issuer.discovery_issuer = "https://evil.test/"
        client, cache = make_cache(issuer, FakeClock(), discovery=True)
        with pytest.raises(KeysUnavailableError):
            await cache.get("key-1", "RS256")
        assert "not ours" in (cache.last_error or "")
        await client.aclose()

    run(scenario())


def test_private_members_of_a_published_key_are_dropped(issuer, rsa_keys) -> None:
    import httpx

    async def scenario() -> None:
        private = rsa_keys["key-1"].as_dict(private=True)
        issuer.jwks_body = httpx.Response(200, json={"keys": [private]}).content
        client, cache = make_cache(issuer, FakeClock())
        key = await cache.get("key-1", "RS256")
        assert not key.is_private
        await client.aclose()

    run(scenario())


# --- the same rules through the running app --------------------------------------------------


def test_rotation_end_to_end(make_settings, issuer: FakeIssuer) -> None:
    """Unknown kid appears after rotation -> accepted; retired kid -> refused; random kids
    after that -> no more fetches within the cooldown."""
    cooldown = 0.5
    with running_app(make_settings(jwks_refresh_cooldown_s=cooldown), issuer) as client:
        assert client.get("/model", headers=bearer(issuer.token("key-1"))).status_code == 200
        time.sleep(cooldown + 0.05)
        issuer.published = ["key-2"]
        assert client.get("/model", headers=bearer(issuer.token("key-2"))).status_code == 200
        fetches = issuer.jwks_fetches
        response = client.get("/model", headers=bearer(issuer.token("key-1")))
        assert response.status_code == 401
        assert "does not publish" in response.json()["detail"]
        started = time.monotonic()
        for _ in range(20):
            token = issuer.token(random_kid(), signing_key="attacker")
            assert client.get("/model", headers=bearer(token)).status_code == 401
        windows = int((time.monotonic() - started) // cooldown)  # 0 unless the machine crawls
        assert issuer.jwks_fetches - fetches <= windows


def test_keys_endpoint_down_at_cold_start_is_503_then_recovers(make_settings, issuer) -> None:
    issuer.up = False
    with running_app(make_settings(jwks_refresh_cooldown_s=0.2), issuer) as client:
        response = client.get("/model", headers=bearer(issuer.token()))
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert "signing keys" in response.json()["detail"]
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "signing keys" in ready.json()["reason"]
        issuer.up = True
        time.sleep(0.25)
        assert client.get("/model", headers=bearer(issuer.token())).status_code == 200
        assert client.get("/ready").status_code == 200


def test_keys_endpoint_down_after_warm_up_still_serves(make_settings, issuer) -> None:
    settings = make_settings(jwks_cache_ttl_s=0.05, jwks_refresh_cooldown_s=0)
    with running_app(settings, issuer) as client:
        assert client.get("/model", headers=bearer(issuer.token())).status_code == 200
        issuer.up = False
        attempts = len(issuer.requests)
        time.sleep(0.1)  # the TTL passes: every request now tries a refresh, which fails
        for _ in range(3):
            assert client.get("/model", headers=bearer(issuer.token())).status_code == 200
        assert len(issuer.requests) > attempts
        assert client.get("/ready").status_code == 200


def test_a_silent_keys_endpoint_times_out() -> None:
    """A real loopback server that accepts and never answers: the fetch gives up in time."""
    import httpx

    async def scenario() -> None:
        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(30)

        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as client:
            cache = KeyCache(
                client,
                issuer=f"http://127.0.0.1:{port}/",
                jwks_uri=f"http://127.0.0.1:{port}/jwks",
                discovery_uri=f"http://127.0.0.1:{port}/.well-known/openid-configuration",
                algorithms=["RS256"],
                timeout_s=0.3,
            )
            started = time.monotonic()
            with pytest.raises(KeysUnavailableError):
                await cache.get("key-1", "RS256")
            assert time.monotonic() - started < 2
            assert "Timeout" in (cache.last_error or "")
        server.close()

    run(scenario())


# -- recovery while no key is cached, hostile documents ---------------------------------------


def test_cold_start_outage_recovers_in_the_background_within_two_seconds(
    make_settings, issuer
) -> None:
    """Default 30 s cooldown: the background retries (1 s, then x1.5) do not wait for it."""
    issuer.up = False
    with running_app(make_settings(jwks_refresh_cooldown_s=30), issuer) as client:
        time.sleep(1.2)  # two failed attempts: at start-up and about 1 s later
        response = client.get("/model", headers=bearer(issuer.token()))
        assert response.status_code == 503
        assert 1 <= int(response.headers["Retry-After"]) <= 2  # the next attempt, not 30 s
        issuer.up = True
        came_back = time.monotonic()
        while not client.app_state["resources"].keys.kids:  # no request drives this
            assert time.monotonic() - came_back < 2.5, "no background recovery"
            time.sleep(0.05)
        recovered_s = time.monotonic() - came_back
        issuer.up = False  # served from the keys fetched in the background
        assert client.get("/model", headers=bearer(issuer.token())).status_code == 200
    print(f"keys recovered {recovered_s:.2f} s after the issuer came back")


def test_retry_after_while_no_key_is_cached_is_the_time_to_the_next_attempt(issuer) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock)
        issuer.up = False
        waits = []
        for _ in range(12):
            with pytest.raises(KeysUnavailableError) as caught:
                await cache.get("key-1", "RS256")
            waits.append(caught.value.retry_after_s)
            clock.now += caught.value.retry_after_s
        assert waits[:4] == [1, 2, 3, 4]  # 1, 1.5, 2.25, 3.4 s rounded up
        assert waits[-1] == 30  # capped by the cooldown
        issuer.up = True
        assert (await cache.get("key-1", "RS256")).kid == "key-1"
        await cache.aclose()
        await client.aclose()

    run(scenario())


@pytest.mark.parametrize(
    "body",
    [
        b'{"keys": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        b'{"keys": [{"kty": "RSA", "kid": "k", "n": ' + b"[" * 900 + b"]" * 900 + b"}]}",
        b"\xff\xfe{\x00}\x00",
    ],
    ids=["nested-5000", "nested-key-900", "utf-16"],
)
def test_hostile_key_set_at_cold_start_is_503_with_retry_after(make_settings, issuer, body) -> None:
    issuer.jwks_body = body
    with running_app(make_settings(), issuer) as client:
        response = client.get("/model", headers=bearer(issuer.token()))
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) >= 1
        ready = client.get("/ready")
        assert ready.status_code == 503 and "signing keys" in ready.json()["reason"]


def test_deeply_nested_discovery_document_is_a_failed_fetch(issuer) -> None:
    import httpx

    nested = b'{"issuer": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=nested))

    async def scenario() -> None:
        clock = FakeClock()
        client, cache = make_cache(issuer, clock, discovery=True, transport=transport)
        with pytest.raises(KeysUnavailableError):
            await cache.get("key-1", "RS256")
        assert "nested deeper" in (cache.last_error or "")
        await cache.aclose()
        await client.aclose()

    run(scenario())
