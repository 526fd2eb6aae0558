"""Key-server faults: the API's JWKS URL points at a fault-injecting proxy in front of the issuer.

Tokens come from the real development issuer; only the keys endpoint misbehaves. Short cache
TTL and refresh cooldown make refreshes happen within seconds, and the proxy counts every
fetch that reaches it, so "cached keys kept" is only claimed when a bad answer was actually
served to the API.

Server 1 (TTL 2 s): (a) outage at cold start, then recovery without restart; (b) outage after
warm-up; (d) empty and garbage JWKS after warm-up.
Server 2 (TTL 600 s): (c) a slow keys endpoint: 50 concurrent requests with a new key id cause
exactly one fetch; the wait is bounded by the fetch timeout, also when the body trickles in
(a per-read timeout alone would wait for the whole trickle).
"""

import asyncio
import time
from dataclasses import dataclass

import httpx

from reliability import load, payloads
from reliability.checks import Context
from reliability.fault_proxy import FaultProxy
from reliability.report import CheckResult
from reliability.stack import Api, Issuer

TITLE = "key-server faults through a fault-injecting JWKS proxy"
TTL_S = 2.0
COOLDOWN_S = 1.0
FETCH_TIMEOUT_S = 2.0
SLOW_OK_S = 1.0  # slower than usual, within the fetch timeout: requests must succeed
SLOW_BAD_S = 6.0  # beyond the fetch timeout: the wait must be bounded by it
DRIP_S = 0.5  # the JWKS (~1.8 KB) trickles in over ~14 s, each read well within the timeout
WAIT_MARGIN_S = 1.5  # request handling on a busy 2-core machine, on top of the fetch timeout
BURST = 50
JWKS_PATH = "/.well-known/jwks.json"


@dataclass
class Client:
    api: Api
    image: bytes

    async def upload(self, http: httpx.AsyncClient, token: str) -> load.Outcome:
        return await load.send(
            http, "POST", self.api.url + "/upload", **load.upload_kwargs(token, self.image)
        )

    async def burst(self, token: str, n: int, concurrency: int) -> list[load.Outcome]:
        async with load.client(concurrency) as http:
            return list(await asyncio.gather(*(self.upload(http, token) for _ in range(n))))

    async def steady(self, token: str, seconds: float) -> list[load.Outcome]:
        """Requests one after another for ``seconds``: spans several cache TTLs."""
        outcomes: list[load.Outcome] = []
        stop_at = time.monotonic() + seconds
        async with load.client(1) as http:
            while time.monotonic() < stop_at and len(outcomes) < 500:
                outcomes.append(await self.upload(http, token))
                await asyncio.sleep(0.05)
        return outcomes


def _env(proxy: FaultProxy, ttl_s: float) -> dict[str, object]:
    return {
        "OAUTH2_JWKS_URI": proxy.url(JWKS_PATH),
        "JWKS_CACHE_TTL_S": ttl_s,
        "JWKS_REFRESH_COOLDOWN_S": COOLDOWN_S,
        "JWKS_FETCH_TIMEOUT_S": FETCH_TIMEOUT_S,
    }


def run(ctx: Context, result: CheckResult) -> None:
    image = payloads.valid_jpeg(5)
    with Issuer() as issuer, FaultProxy(issuer.url) as proxy:
        proxy.set_mode("refuse")  # the API starts while its keys are unreachable
        api = Api(issuer, ctx.model_path, **_env(proxy, TTL_S)).start(wait_ready=False)
        try:
            client = Client(api, image)
            _cold_start(result, issuer, proxy, client)
            _outage_after_warmup(result, issuer, proxy, client, ctx)
            _bad_jwks(result, issuer, proxy, client)
        finally:
            api.process.stop()
        proxy.set_mode("slow", delay_s=SLOW_OK_S)
        with Api(issuer, ctx.model_path, **_env(proxy, 600)) as api:
            _slow_keys(result, issuer, proxy, Client(api, image))


def _cold_start(result: CheckResult, issuer: Issuer, proxy: FaultProxy, client: Client) -> None:
    api = client.api
    token = issuer.token()
    with httpx.Client(timeout=30, trust_env=False) as http:
        ready = http.get(api.url + "/ready")
        uploads = [
            http.post(api.url + "/upload", **load.upload_kwargs(token, client.image))
            for _ in range(5)
        ]
        proxy.set_mode("error")  # the keys endpoint answers, but with 503
        time.sleep(COOLDOWN_S + 0.2)
        uploads.append(http.post(api.url + "/upload", **load.upload_kwargs(token, client.image)))
        pid = api.pid
        proxy.set_mode("pass")
        recovered_at = _wait_recovery(http, api.url, token, client.image, timeout_s=30)
        after = http.post(api.url + "/upload", **load.upload_kwargs(token, client.image))
        ready_after = http.get(api.url + "/ready")

    statuses = [r.status_code for r in uploads]
    retry_after = [r.headers.get("retry-after") for r in uploads]
    result.figure(
        "(a) cold start, keys unreachable: /ready", f"{ready.status_code} {ready.text[:120]}"
    )
    result.figure(
        "(a) /upload statuses during outage (Retry-After)",
        ", ".join(f"{s} ({ra})" for s, ra in zip(statuses, retry_after, strict=True)),
    )
    result.figure(
        "(a) recovery: first 200 after keys came back (s)",
        "never" if recovered_at is None else f"{recovered_at:.2f}",
    )
    result.figure(
        "(a) after recovery: /upload, /ready", f"{after.status_code}, {ready_after.status_code}"
    )
    result.require(
        "(a) /ready is 503 while keys are unreachable at cold start",
        ready.status_code == 503,
        ready.status_code,
    )
    result.require(
        "(a) /upload answers 503 with Retry-After while keys are unreachable",
        all(s == 503 for s in statuses) and all(retry_after),
        statuses,
    )
    result.require(
        "(a) recovers without restart (same process, 200 and ready)",
        recovered_at is not None
        and after.status_code == 200
        and load.is_valid_prediction(after.content)
        and ready_after.status_code == 200
        and api.pid == pid
        and api.process.alive(),
        f"upload {after.status_code}, ready {ready_after.status_code}",
    )


def _wait_recovery(
    http: httpx.Client, url: str, token: str, image: bytes, timeout_s: float
) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        response = http.post(url + "/upload", **load.upload_kwargs(token, image))
        if response.status_code == 200:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def _outage_after_warmup(
    result: CheckResult, issuer: Issuer, proxy: FaultProxy, client: Client, ctx: Context
) -> None:
    token = issuer.token()
    seconds = ctx.scale(4, 3)
    warm = load.run(client.burst(token, 20, 8))
    phases: dict[str, list[load.Outcome]] = {}
    fetches: dict[str, int] = {}
    for mode in ("refuse", "error", "reset"):
        proxy.set_mode(mode)
        mark = time.monotonic()
        outcome = load.run(client.steady(token, seconds))
        phases[mode], fetches[mode] = outcome, proxy.count(mark, JWKS_PATH)
    proxy.set_mode("pass")
    result.figure("(b) warm-up before outage", load.histogram(warm))
    for mode, outcomes in phases.items():
        result.figure(
            f"(b) outage '{mode}' for {seconds} s (TTL {TTL_S:.0f} s): outcomes / "
            "fetch attempts at proxy",
            f"{load.histogram(outcomes)} / "
            f"{'n/a (refused)' if mode == 'refuse' else fetches[mode]}",
        )
    everything = [o for outcomes in phases.values() for o in outcomes]
    result.require(
        "(b) outage after warm-up: every request keeps succeeding (cached keys)",
        bool(everything) and all(o.valid for o in everything),
        f"{sum(o.valid for o in everything)}/{len(everything)} ok",
    )
    result.require(
        "(b) the API did try to refresh during the outage (faults really served)",
        fetches["error"] >= 1 and fetches["reset"] >= 1,
        f"error {fetches['error']}, reset {fetches['reset']}",
    )


def _bad_jwks(result: CheckResult, issuer: Issuer, proxy: FaultProxy, client: Client) -> None:
    old_token = issuer.token()
    issuer.rotate()
    new_token = issuer.token()  # signed with a key id the API has never seen
    for mode in ("empty", "garbage"):
        proxy.set_mode(mode)
        time.sleep(COOLDOWN_S + 0.2)
        mark = time.monotonic()
        unknown = load.run(client.burst(new_token, 5, 5))  # forces a refresh: gets the bad JWKS
        time.sleep(TTL_S + 0.2)
        kept = load.run(client.steady(old_token, 3))
        fetched = proxy.count(mark, JWKS_PATH)
        result.figure(
            f"(d) '{mode}' JWKS: fetches served / new-kid outcomes / old-kid outcomes",
            f"{fetched} / {load.histogram(unknown)} / {load.histogram(kept)}",
        )
        result.require(
            f"(d) '{mode}' JWKS after warm-up: cached keys kept, requests succeed",
            fetched >= 1
            and bool(kept)
            and all(o.valid for o in kept)
            and not any((o.status or 0) >= 500 and o.status != 503 for o in unknown),
            f"{sum(o.valid for o in kept)}/{len(kept)} ok after {fetched} bad fetches",
        )
    proxy.set_mode("pass")
    time.sleep(COOLDOWN_S + 0.2)
    recovered = load.run(client.burst(new_token, 5, 5))
    result.figure("(d) keys endpoint healthy again: new-kid outcomes", load.histogram(recovered))
    result.require(
        "(d) the new key is accepted once the keys endpoint is healthy again",
        all(o.valid for o in recovered),
        load.histogram(recovered),
    )


def _slow_keys(result: CheckResult, issuer: Issuer, proxy: FaultProxy, client: Client) -> None:
    warm = load.run(client.burst(issuer.token(), 10, 5))
    if not all(o.valid for o in warm):
        raise RuntimeError(f"warm-up failed: {load.histogram(warm)}")
    rounds = (("slow", SLOW_OK_S, True), ("slow", SLOW_BAD_S, False), ("drip", DRIP_S, False))
    for mode, delay_s, within in rounds:
        issuer.rotate()
        token = issuer.token()
        proxy.set_mode(mode, delay_s=delay_s)
        time.sleep(COOLDOWN_S + 0.2)
        mark = time.monotonic()
        outcomes = load.run(client.burst(token, BURST, BURST))
        time.sleep(0.5)
        fetches = proxy.count(mark, JWKS_PATH)
        worst = max(o.latency_s for o in outcomes)
        label = (
            f"(c) keys {delay_s:.0f} s slow"
            if mode == "slow"
            else f"(c) keys dripping 64 B every {delay_s} s"
        ) + f" (fetch timeout {FETCH_TIMEOUT_S:.0f} s)"
        result.figure(
            f"{label}: {BURST} concurrent new-kid requests -> fetches / outcomes / slowest (s)",
            f"{fetches} / {load.histogram(outcomes)} / {worst:.2f}",
        )
        result.require(
            f"{label}: {BURST} concurrent requests cause exactly 1 fetch", fetches == 1, fetches
        )
        if within:
            ok = sum(o.valid for o in outcomes)
            result.require(f"{label}: all succeed", ok == len(outcomes), load.histogram(outcomes))
            if 0 < ok < len(outcomes) and fetches == 1:
                result.note(
                    f"{label}: {ok} of {len(outcomes)} succeeded after the one fetch: requests "
                    "arriving while the refresh was in flight were rejected instead of waiting "
                    "for it (single-flight without sharing the result)"
                )
        else:
            bound = FETCH_TIMEOUT_S + WAIT_MARGIN_S
            result.require(
                f"{label}: bounded wait <= {bound:.1f} s, no 5xx but 503",
                worst <= bound
                and not any((o.status or 0) >= 500 and o.status != 503 for o in outcomes),
                f"{worst:.2f} s",
            )
            if worst > bound:
                result.note(
                    f"{label}: a request waited {worst:.1f} s: the fetch timeout bounds each "
                    "read, not the whole fetch, so a keys endpoint that trickles its body holds "
                    "the refresh (and whoever waits on it) for as long as it likes"
                )
    proxy.set_mode("pass")
