"""The fault-injecting proxy, over real loopback HTTP: each mode, and the fetch counter."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import httpx
import pytest
import trustme

from reliability.fault_proxy import FaultProxy

PATH = "/.well-known/jwks.json"


@pytest.fixture
def proxy(upstream: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream) as p:
        yield p


def get(proxy: FaultProxy, timeout: float = 5.0) -> httpx.Response:
    return httpx.get(proxy.url(PATH), timeout=timeout, trust_env=False)


def test_pass_forwards_the_upstream_answer_and_counts_it(
    proxy: FaultProxy, jwks: dict[str, object]
) -> None:
    mark = time.monotonic()
    response = get(proxy)
    assert response.status_code == 200
    assert response.json() == jwks
    assert proxy.count(mark, PATH) == 1


def test_refuse_closes_the_port_and_pass_reopens_it(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.set_mode("refuse")
    with pytest.raises(httpx.ConnectError):
        get(proxy)
    proxy.set_mode("pass")
    assert proxy.port == port
    assert get(proxy).status_code == 200


def test_error_empty_and_garbage_answer_what_they_say(proxy: FaultProxy) -> None:
    proxy.set_mode("error")
    assert get(proxy).status_code == 503
    proxy.set_mode("empty")
    assert get(proxy).json() == {"keys": []}
    proxy.set_mode("garbage")
    response = get(proxy)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_reset_drops_the_connection_without_an_answer(proxy: FaultProxy) -> None:
    proxy.set_mode("reset")
    mark = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        get(proxy)
    assert proxy.count(mark) == 1


def test_slow_delays_then_forwards_and_a_short_timeout_gives_up(
    proxy: FaultProxy, jwks: dict[str, object]
) -> None:
    proxy.set_mode("slow", delay_s=0.4)
    start = time.monotonic()
    assert get(proxy).json() == jwks
    assert time.monotonic() - start >= 0.4
    with pytest.raises(httpx.ReadTimeout):
        get(proxy, timeout=0.1)


def test_unknown_mode_is_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        proxy.set_mode("flaky")


def test_drip_defeats_a_per_read_timeout_but_not_a_total_deadline(
    proxy: FaultProxy, jwks: dict[str, object]
) -> None:
    proxy.set_mode("drip", delay_s=0.05)
    start = time.monotonic()
    response = get(proxy, timeout=0.5)  # every read waits 0.05 s: never times out
    assert response.json() == jwks
    assert time.monotonic() - start >= 0.05 * (len(response.content) // 64)


def test_stop_is_prompt_with_an_injected_delay_pending(upstream: str) -> None:
    proxy = FaultProxy(upstream).start()
    proxy.set_mode("slow", delay_s=60)
    with pytest.raises(httpx.ReadTimeout):
        get(proxy, timeout=0.2)  # the client gives up; the proxy's handler is still sleeping
    start = time.monotonic()
    proxy.stop()
    assert time.monotonic() - start < 2


def test_with_an_ssl_context_it_serves_https_and_still_injects_faults(
    upstream: str, jwks: dict[str, object]
) -> None:
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    authority.configure_trust(client)
    with FaultProxy(upstream, ssl_context=server) as tls:
        assert tls.url(PATH).startswith("https://127.0.0.1:")
        assert httpx.get(tls.url(PATH), verify=client, trust_env=False).json() == jwks
        tls.set_mode("refuse")
        with pytest.raises(httpx.ConnectError):
            httpx.get(tls.url(PATH), verify=client, trust_env=False, timeout=5)
        tls.set_mode("pass")
        assert httpx.get(tls.url(PATH), verify=client, trust_env=False).status_code == 200
