"""Per-client limits in images: in-process, and shared by two app instances on a real Redis."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.auth.tokens import Principal
from cats_dogs_other.api.rate_limits import RateLimiter, client_key
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.state_redis import RedisState
from cats_dogs_other.testing.issuer import FakeIssuer
from tests.api.support import bearer, running_app, serve, two_replicas
from tests.support.redis_server import RedisServer, fake_store

POLICY = re.compile(r'^"images";q=(\d+);w=(\d+)$')


def upload(client: TestClient, headers: dict[str, str], image: bytes, n: int = 0) -> httpx.Response:
    """``image`` to /upload, or ``n`` copies of it to /upload/batch."""
    if not n:
        return client.post(
            "/upload", headers=headers, files={"file": ("a.png", image, "image/png")}
        )
    files = [("file", (f"{i}.png", image, "image/png")) for i in range(n)]
    return client.post("/upload/batch", headers=headers, files=files)


@pytest.fixture(scope="module")
def limited(
    make_settings: Callable[..., Settings], module_issuer: FakeIssuer
) -> Iterator[TestClient]:
    overrides = {"oauth2:tiny-client": "1/minute", "oauth2:cid-only": "2/minute"}
    settings = make_settings(
        rate_limit="4/minute", rate_limits_by_client=json.dumps(overrides), max_batch_files=8
    )
    with running_app(settings, module_issuer) as client:
        yield client


def fresh_client(issuer: FakeIssuer, name: str, **claims: Any) -> dict[str, str]:
    """A token of its own client, so each test starts with a full allowance."""
    return bearer(issuer.token(azp=f"{name}-{time.monotonic_ns()}", **claims))


def test_single_images_are_counted_then_refused_with_429_and_the_ietf_headers(
    limited: TestClient, module_issuer: FakeIssuer, images: dict[str, bytes]
) -> None:
    headers = fresh_client(module_issuer, "singles")
    for _ in range(4):
        response = upload(limited, headers, images["red"])
        assert response.status_code == 200, response.text
        assert response.headers["RateLimit-Policy"] == '"images";q=4;w=60'
    refused = upload(limited, headers, images["red"])
    assert refused.status_code == 429
    assert refused.json()["limit"] == "4/minute"
    assert "RATE_LIMIT" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert POLICY.match(refused.headers["RateLimit-Policy"])
    assert refused.headers["RateLimit"] == f'"images";r=0;t={refused.headers["Retry-After"]}'
    assert "cats_dogs_other_rate_limited_total 1.0" in limited.get("/metrics").text
    other = fresh_client(module_issuer, "other")  # another client is not affected
    assert upload(limited, other, images["red"]).status_code == 200


def test_a_refused_request_costs_no_parsing_or_decoding(
    limited: TestClient, module_issuer: FakeIssuer, images: dict[str, bytes]
) -> None:
    headers = fresh_client(module_issuer, "garbage")
    for _ in range(4):
        upload(limited, headers, images["red"])
    # Not an image and not even multipart: still 429, since nothing was read.
    for path in ("/upload", "/upload/batch"):
        response = limited.post(path, headers=headers, content=b"\x00" * 100)
        assert response.status_code == 429, (path, response.text)


def test_a_batch_is_charged_all_or_nothing(
    limited: TestClient, module_issuer: FakeIssuer, images: dict[str, bytes]
) -> None:
    headers = fresh_client(module_issuer, "batches")
    assert upload(limited, headers, images["red"], 3).status_code == 200
    refused = upload(limited, headers, images["red"], 2)
    assert refused.status_code == 429  # 3 + 2 > 4, and nothing of it was charged:
    assert upload(limited, headers, images["red"]).status_code == 200
    assert upload(limited, headers, images["red"]).status_code == 429


def test_a_batch_larger_than_the_whole_limit_is_422_naming_the_setting(
    limited: TestClient, module_issuer: FakeIssuer, images: dict[str, bytes]
) -> None:
    headers = fresh_client(module_issuer, "huge")
    response = upload(limited, headers, images["red"], 5)
    assert response.status_code == 422
    assert "RATE_LIMIT=4/minute" in response.json()["detail"]
    assert response.json()["limit"] == "4/minute"
    assert upload(limited, headers, images["red"], 4).status_code == 200


def test_overrides_by_client_key_azp_then_client_id(
    limited: TestClient, module_issuer: FakeIssuer, images: dict[str, bytes]
) -> None:
    tiny = bearer(module_issuer.token(azp="tiny-client"))
    assert upload(limited, tiny, images["red"]).status_code == 200
    refused = upload(limited, tiny, images["red"])
    assert refused.status_code == 429 and refused.json()["limit"] == "1/minute"
    assert "RATE_LIMITS_BY_CLIENT" in refused.json()["detail"]
    by_client_id = bearer(module_issuer.token(azp=None, client_id="cid-only", sub="someone"))
    codes = [upload(limited, by_client_id, images["red"]).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_other_endpoints_are_not_counted(limited: TestClient, module_issuer: FakeIssuer) -> None:
    tiny = bearer(module_issuer.token(azp="tiny-client"))
    for _ in range(3):
        assert limited.get("/model", headers=tiny).status_code == 200


def test_client_key_names_the_issuer() -> None:
    principal = Principal(client_id="abc", scopes=frozenset())
    assert client_key(principal) == "oauth2:abc"
    assert client_key(principal, "github") == "github:abc"


# --- shared by two instances on a real Redis -------------------------------------------------


@pytest.fixture
def shared(
    make_settings: Callable[..., Settings], module_issuer: FakeIssuer, redis_url: str
) -> Iterator[tuple[TestClient, TestClient]]:
    settings = make_settings(
        rate_limit="5/minute", state_url=redis_url, state_timeout_ms=200, workers=2
    )
    with two_replicas(settings, module_issuer) as replicas:
        yield replicas


def test_the_limit_is_exact_across_instances_and_every_key_expires(
    shared: tuple[TestClient, TestClient],
    module_issuer: FakeIssuer,
    images: dict[str, bytes],
    redis_server: RedisServer,
) -> None:
    headers = fresh_client(module_issuer, "shared")
    codes = [upload(shared[i % 2], headers, images["red"]).status_code for i in range(12)]
    assert codes.count(200) == 5 and codes[:5] == [200] * 5 and set(codes[5:]) == {429}
    client = redis_server.client()
    keys = list(client.scan_iter("*"))
    assert keys and all(key.startswith(b"cdo:rl") for key in keys)
    assert all(b"shared" not in key for key in keys)  # hashed client ids
    assert all(0 < client.ttl(key) <= 60 for key in keys)


def test_a_store_outage_fails_open_and_is_counted(
    shared: tuple[TestClient, TestClient],
    module_issuer: FakeIssuer,
    images: dict[str, bytes],
    redis_server: RedisServer,
) -> None:
    headers = fresh_client(module_issuer, "outage")
    redis_server.stop()
    codes = [upload(shared[0], headers, images["red"]).status_code for _ in range(7)]
    assert codes == [200] * 7
    text = shared[0].get("/metrics").text
    assert 'cats_dogs_other_state_store_errors_total{use="rate_limit"} 7.0' in text
    redis_server.start()


def test_a_hanging_store_fails_open_within_the_timeout(
    make_settings: Callable[..., Settings],
) -> None:
    async def scenario(url: str) -> float:
        settings = make_settings(rate_limit="1/minute", state_url=url, state_timeout_ms=100)
        state = RedisState(url, timeout_ms=100, key_prefix="cdo:")
        limiter = RateLimiter.from_settings(settings, state.pool)
        assert limiter is not None
        try:
            started = time.monotonic()
            for _ in range(3):
                await limiter.precheck("oauth2:x")
                await limiter.charge("oauth2:x", 1)
            return time.monotonic() - started
        finally:
            await state.aclose()

    for answer in (None, b"-ERR nonsense\r\n"):
        with fake_store(answer) as url:
            assert asyncio.run(scenario(url)) < 6 * 0.1 + 1.0


def test_the_limit_holds_exactly_under_concurrent_requests_to_two_servers(
    make_settings: Callable[..., Settings],
    module_issuer: FakeIssuer,
    images: dict[str, bytes],
    redis_url: str,
) -> None:
    """3R requests at once through two real uvicorn servers: exactly R accepted."""
    settings = make_settings(rate_limit="6/minute", state_url=redis_url, state_timeout_ms=500)
    headers = fresh_client(module_issuer, "burst")

    async def burst(urls: list[str]) -> list[int]:
        async with httpx.AsyncClient(timeout=30) as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        urls[i % 2] + "/upload",
                        headers=headers,
                        files={"file": ("a.png", images["red"], "image/png")},
                    )
                    for i in range(18)
                )
            )
        return [answer.status_code for answer in answers]

    apps = [create_app(settings, transport=module_issuer.transport) for _ in range(2)]
    with serve(apps[0]) as first, serve(apps[1]) as second:
        urls = [f"http://{host}:{port}" for host, port in (first, second)]
        codes = asyncio.run(burst(urls))
    assert codes.count(200) == 6 and codes.count(429) == 12, codes
