"""Replicas behind HAProxy sharing Redis, under faults (``python -m reliability replicas``).

One fleet (:mod:`reliability.fleet`: the issuer, redis-server, N replicas, HAProxy), then in turn:

1. **replay**: a DPoP proof accepted through replica A is refused through replica B and
   through the load balancer as a replay (the replay message and the ``dpop_replay`` metric);
2. **rate limits**: the noisy client, limited to R images a minute, sends 3R as fast as it can
   through the load balancer; the steady client sends at a tenth of its own limit meanwhile;
3. **store outage**: Redis SIGKILLed under Bearer and DPoP load, restarted on the same port;
4. **store memory**: live proofs in Redis, their TTLs and bytes per 10,000 of them;
5. **replica killed**: one replica SIGKILLed under load, then restarted;
6. **rolling restart**: SIGTERM one replica, wait until HAProxy routes to it again, the next.

:data:`FULL` holds the figures the issue demands; ``tests/reliability/test_replicas.py`` runs
the same scenarios with :data:`TESTS` (2 replicas, looser bounds) inside ``make test``.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import httpx
import redis
from kto.client.dpop import DPoPKey
from PIL import Image

from cats_dogs_other.replicas import CHECK_INTERVAL_MS, haproxy_admin, redis_ping
from reliability import load
from reliability.checks import Context
from reliability.fleet import NOISY, STEADY, Fleet, Limits
from reliability.report import CheckResult

TITLE = "replicas behind HAProxy sharing Redis: replay, limits, store and replica faults"
REPLAY_MESSAGE = "already used"  # the API's message for reason="dpop_replay"


@dataclass(frozen=True)
class Bounds:
    """The fleet and what each scenario must show."""

    limits: Limits
    recovery_s: float  # DPoP answered 200 again this soon after Redis answers again
    steady_requests: int  # the steady client's requests during the noisy burst
    steady_ok: float  # the share of them that must be 200s
    down_within_s: float  # HAProxy marks a SIGKILLed replica down this soon
    live_proofs: int  # proofs recorded for the memory figure
    workers: int = 3  # Bearer load workers (plus one DPoP worker) during the faults
    pace_s: float = 0.02  # pause between one worker's requests
    outage_s: float = 2.0  # how long Redis stays down


FULL = Bounds(
    Limits(replicas=3, noisy_per_minute=30, steady_per_minute=12_000, store_timeout_ms=50),
    recovery_s=2.0,
    steady_requests=200,
    steady_ok=0.99,
    down_within_s=CHECK_INTERVAL_MS / 1000 + 0.25,  # one interval + polling and check time
    live_proofs=2_000,
)
TESTS = Bounds(
    Limits(replicas=2, noisy_per_minute=20, steady_per_minute=60_000, store_timeout_ms=500),
    recovery_s=5.0,
    steady_requests=60,
    steady_ok=0.97,
    down_within_s=3 * CHECK_INTERVAL_MS / 1000,
    live_proofs=300,
    workers=2,
    pace_s=0.05,
)


def png(colour: tuple[int, int, int] = (200, 30, 30), size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE = png()


@dataclass
class Shot:
    """One request's outcome: status (None: no answer), timing, the headers that matter."""

    tag: str
    started: float
    ended: float
    status: int | None
    detail: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def latency_s(self) -> float:
        return self.ended - self.started

    @property
    def label(self) -> str:
        return str(self.status) if self.status is not None else self.detail.split(":", 1)[0]


KEPT_HEADERS = ("retry-after", "ratelimit", "ratelimit-policy", "www-authenticate")


async def shoot(http: httpx.AsyncClient, url: str, headers: dict[str, str], tag: str) -> Shot:
    """POST the image to ``url``; transport failures become a Shot, never an exception."""
    started = time.monotonic()
    files = {"file": ("image.png", IMAGE, "image/png")}
    try:
        response = await http.post(url, headers=headers, files=files)
    except httpx.HTTPError as exc:
        kind = load.transport_kind(exc)
        return Shot(tag, started, time.monotonic(), None, f"{kind}: {exc!r}")
    kept = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    detail = "" if response.status_code == 200 else response.text[:300]
    return Shot(tag, started, time.monotonic(), response.status_code, detail, kept)


class Credentials:
    """A Bearer token and a DPoP key with its bound token, for one client."""

    def __init__(self, fleet: Fleet, client_id: str = STEADY) -> None:
        self.bearer = fleet.bearer(client_id)
        self.key = DPoPKey()
        self.dpop_token = fleet.dpop_token(self.key, client_id)

    def bearer_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}

    def dpop_headers(self, url: str) -> dict[str, str]:
        proof = self.key.proof("POST", httpx.URL(url), access_token=self.dpop_token)
        return {"Authorization": f"DPoP {self.dpop_token}", "DPoP": proof}


async def steady_load(
    fleet: Fleet, creds: Credentials, bounds: Bounds, fault: Callable[[], None]
) -> list[Shot]:
    """Bearer and DPoP uploads through the load balancer while ``fault()`` runs in a thread."""
    url = fleet.c.lb_url + "/upload"
    shots: list[Shot] = []
    done = asyncio.Event()

    async def worker(dpop: bool) -> None:
        async with load.client(1, timeout_s=30) as http:
            while not done.is_set():
                headers = creds.dpop_headers(url) if dpop else creds.bearer_headers()
                shots.append(await shoot(http, url, headers, "dpop" if dpop else "bearer"))
                await asyncio.sleep(bounds.pace_s)

    tasks = [asyncio.create_task(worker(False)) for _ in range(bounds.workers)]
    tasks.append(asyncio.create_task(worker(True)))
    try:
        await asyncio.sleep(1.0)  # load before the fault
        await asyncio.to_thread(fault)
        await asyncio.sleep(1.0)  # and after it
    finally:
        done.set()
        await asyncio.gather(*tasks)
    return shots


def failures(shots: list[Shot]) -> list[Shot]:
    return [shot for shot in shots if shot.status != 200]


def summary(shots: list[Shot]) -> str:
    return str(load.histogram(shots))  # type: ignore[arg-type]


# --- 1. replay ------------------------------------------------------------------------------
def replay(fleet: Fleet, bounds: Bounds, result: CheckResult) -> None:
    creds = Credentials(fleet)
    lb, a, b = fleet.c.lb_url, fleet.c.replica_url(0), fleet.c.replica_url(1)
    headers = creds.dpop_headers(lb + "/upload")  # signed for the public URL, the LB's

    async def send_three() -> list[Shot]:
        async with load.client(1) as http:
            return [await shoot(http, base + "/upload", headers, base) for base in (a, b, lb)]

    first, via_b, via_lb = load.run(send_three())
    result.figure("replay: replica A / replica B / load balancer", f"{first.label} / "
                  f"{via_b.label} / {via_lb.label}")  # fmt: skip
    result.require(
        "the proof is accepted once, through replica A", first.status == 200, first.label
    )
    for name, shot in (("replica B", via_b), ("the load balancer", via_lb)):
        refused = shot.status == 401 and REPLAY_MESSAGE in shot.detail
        result.require(f"the same proof through {name}: 401 as a replay", refused, shot.detail)
    metrics = httpx.get(b + "/metrics", timeout=5, trust_env=False).text
    counted = 'auth_failures_total{reason="dpop_replay"}' in metrics
    result.require("replica B counts it under reason=dpop_replay", counted, counted)


# --- 2. rate limits -------------------------------------------------------------------------
def rate_limits(fleet: Fleet, bounds: Bounds, result: CheckResult) -> None:
    limit = bounds.limits.noisy_per_minute
    url = fleet.c.lb_url + "/upload"
    noisy = {"Authorization": f"Bearer {fleet.bearer(NOISY)}"}
    steady = {"Authorization": f"Bearer {fleet.bearer(STEADY)}"}
    interval_s = 600 / bounds.limits.steady_per_minute  # a tenth of its limit

    async def burst() -> list[Shot]:
        async with load.client(6) as http:
            return list(
                await asyncio.gather(*(shoot(http, url, noisy, "noisy") for _ in range(3 * limit)))
            )

    async def paced() -> list[Shot]:
        shots = []
        async with load.client(4) as http:
            start = time.monotonic()
            pending = []
            for i in range(bounds.steady_requests):
                await asyncio.sleep(max(0.0, start + i * interval_s - time.monotonic()))
                pending.append(asyncio.create_task(shoot(http, url, steady, "steady")))
            shots = list(await asyncio.gather(*pending))
        return shots

    async def both() -> tuple[list[Shot], list[Shot]]:
        steady_task = asyncio.create_task(paced())
        await asyncio.sleep(min(0.5, bounds.steady_requests * interval_s / 4))
        return await burst(), await steady_task

    open_before = fail_open(fleet)
    noisy_shots, steady_shots = load.run(both())
    served_open = fail_open(fleet) - open_before
    accepted = sum(s.status == 200 for s in noisy_shots)
    refused = [s for s in noisy_shots if s.status == 429]
    result.figure(
        f"rate limit: noisy client (R = {limit}/min) sent {3 * limit}", summary(noisy_shots)
    )
    result.figure("rate limit: served open (store slower than STATE_TIMEOUT_MS)", served_open)
    # Exact while the store answers in time; each limit check it does not answer within
    # STATE_TIMEOUT_MS serves the request (fail open), counted in the metric read here.
    result.require(
        f"noisy client: at most R = {limit} accepted, + those served open",
        accepted <= limit + served_open,
        f"{accepted} accepted, {served_open:g} served open",
    )
    result.require(
        "noisy client: every other request a 429",
        len(refused) == len(noisy_shots) - accepted,
        summary(noisy_shots),
    )
    headed = all(
        {"retry-after", "ratelimit", "ratelimit-policy"} <= s.headers.keys() for s in refused
    )
    result.require("each 429 has Retry-After, RateLimit and RateLimit-Policy", headed, headed)
    ok = sum(s.status == 200 for s in steady_shots) / max(1, len(steady_shots))
    result.figure("rate limit: steady client (a tenth of its limit)", summary(steady_shots))
    result.require(
        f"steady client: >= {bounds.steady_ok:.0%} of {bounds.steady_requests} answered 200",
        len(steady_shots) >= bounds.steady_requests and ok >= bounds.steady_ok,
        f"{ok:.1%}",
    )


def fail_open(fleet: Fleet) -> float:
    """Rate-limit checks the store did not answer in time, summed over the replicas."""
    pattern = r'^cats_dogs_other_state_store_errors_total\{[^}]*use="rate_limit"[^}]*\} (\S+)$'
    total = 0.0
    for index in range(fleet.c.replicas):
        text = httpx.get(fleet.c.replica_url(index) + "/metrics", timeout=5, trust_env=False).text
        total += sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))
    return total


# --- 3. store outage ------------------------------------------------------------------------
@dataclass
class OutageTimes:
    killed: float = 0.0
    restarted: float = 0.0  # Redis answered PING again


def store_outage(fleet: Fleet, bounds: Bounds, result: CheckResult) -> None:
    creds = Credentials(fleet)
    times = OutageTimes()
    cluster = fleet.c

    def fault() -> None:
        times.killed = time.monotonic()
        cluster.kill_redis()
        time.sleep(bounds.outage_s)
        cluster.start_redis()
        times.restarted = time.monotonic()
        time.sleep(bounds.recovery_s)  # DPoP must be back within this

    shots = load.run(steady_load(fleet, creds, bounds, fault))
    settle = bounds.limits.store_timeout_ms / 1000 + 0.1
    down = [s for s in shots if times.killed + settle < s.started and s.ended < times.restarted]
    dpop_down = [s for s in down if s.tag == "dpop"]
    bearer = [s for s in shots if s.tag == "bearer"]
    back = [s for s in shots if s.tag == "dpop" and s.started >= times.restarted]
    first_ok = next((s for s in back if s.status == 200), None)
    recovery = first_ok.ended - times.restarted if first_ok else float("inf")
    slowest = max(s.latency_s for s in shots)
    result.figure("store outage: DPoP while Redis was down", summary(dpop_down))
    result.figure("store outage: Bearer throughout", summary(bearer))
    result.figure("store outage: DPoP 200 again after Redis answered", f"{recovery:.2f} s")
    result.figure("store outage: slowest request", f"{slowest:.2f} s")
    result.require(
        "DPoP while Redis is down: 503 with Retry-After",
        bool(dpop_down) and all(s.status == 503 and "retry-after" in s.headers for s in dpop_down),
        summary(dpop_down),
    )
    result.require("Bearer: every request 200", not failures(bearer), summary(bearer))
    result.require(
        "no 500 and no transport failure",
        all(s.status is not None and s.status != 500 for s in shots),
        summary(shots),
    )
    timeout = bounds.limits.inference_timeout_s
    result.require(f"no request outlives INFERENCE_TIMEOUT_S={timeout:g}", slowest <= timeout,
                   f"{slowest:.2f} s")  # fmt: skip
    result.require(f"DPoP back within {bounds.recovery_s:g} s, no API restart",
                   recovery <= bounds.recovery_s, f"{recovery:.2f} s")  # fmt: skip


# --- 4. store memory ------------------------------------------------------------------------
def store_memory(fleet: Fleet, bounds: Bounds, result: CheckResult) -> None:
    store = redis.Redis(host="127.0.0.1", port=fleet.c.redis_port, socket_timeout=5)
    prefix = "cdo:dpop:"
    before_keys = _count(store, prefix)
    before_bytes = int(store.info("memory")["used_memory"])
    creds = Credentials(fleet)
    url = fleet.c.lb_url + "/upload"

    async def proofs() -> list[Shot]:
        shots: list[Shot] = []
        numbers = iter(range(bounds.live_proofs))
        async with load.client(4) as http:

            async def worker() -> None:
                for _ in numbers:
                    shots.append(await shoot(http, url, creds.dpop_headers(url), "dpop"))

            await asyncio.gather(*(worker() for _ in range(4)))
        return shots

    shots = load.run(proofs())
    accepted = sum(s.status == 200 for s in shots)
    live = _count(store, prefix) - before_keys
    grown = int(store.info("memory")["used_memory"]) - before_bytes
    untimed = [key for key in store.scan_iter(count=1000) if store.pttl(key) < 0]
    per_10k = grown / max(1, live) * 10_000
    result.figure("store memory: proofs accepted / new live keys", f"{accepted} / {live}")
    result.figure("store memory: bytes per 10,000 live proofs", f"{per_10k:,.0f}")
    result.require("every accepted proof is recorded", live >= accepted > 0, f"{live}/{accepted}")
    result.require("every key in Redis has a TTL", not untimed, f"{len(untimed)} without")
    store.close()


def _count(store: redis.Redis, prefix: str) -> int:
    return sum(1 for _ in store.scan_iter(match=prefix + "*", count=1000))


# --- 5. replica killed ----------------------------------------------------------------------
@dataclass
class KillTimes:
    killed: float = 0.0
    dead: float = 0.0
    down_after_s: float = float("inf")
    in_flight: int = -1  # HAProxy's current sessions on the replica just before the kill


def replica_killed(fleet: Fleet, bounds: Bounds, result: CheckResult) -> None:
    creds = Credentials(fleet)
    cluster = fleet.c
    victim = cluster.replicas - 1
    name = cluster.replica_name(victim)
    times = KillTimes()

    def fault() -> None:
        times.in_flight = _sessions(fleet, name)
        times.killed = time.monotonic()
        cluster.kill_replica(victim)
        times.dead = time.monotonic()  # the process is gone (reaped)
        deadline = times.killed + 10
        while time.monotonic() < deadline:
            if cluster.states().get(name, "").startswith("DOWN"):
                times.down_after_s = time.monotonic() - times.killed
                break
            time.sleep(0.02)

    shots = load.run(steady_load(fleet, creds, bounds, fault))
    failed = failures(shots)
    late = [s for s in failed if s.started > times.dead]
    result.figure("replica killed: requests", summary(shots))
    result.figure("replica killed: failed (in flight on it)", f"{len(failed)} "
                  f"(HAProxy had {times.in_flight} sessions on it)")  # fmt: skip
    result.figure("replica killed: HAProxy marked it down after", f"{times.down_after_s:.2f} s")
    result.require("only requests sent before it died fail", not late, summary(late))
    result.require(
        "failures <= requests in flight (the load's workers)",
        len(failed) <= bounds.workers + 1,
        len(failed),
    )
    result.require(
        f"HAProxy stops routing to it within {bounds.down_within_s:g} s",
        times.down_after_s <= bounds.down_within_s,
        f"{times.down_after_s:.2f} s",
    )
    cluster.start_replica(victim)
    _wait_all_up(fleet)


def _sessions(fleet: Fleet, name: str) -> int:
    lines = haproxy_admin(fleet.c.admin_socket, "show stat").splitlines()
    header = lines[0][2:].split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname") == name:
            return int(row.get("scur") or 0)
    return -1


def _wait_all_up(fleet: Fleet, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not fleet.c.all_up():
        if time.monotonic() > deadline:
            raise RuntimeError(f"HAProxy did not see every replica UP: {fleet.c.states()}")
        time.sleep(0.05)


# --- 6. rolling restart ---------------------------------------------------------------------
def rolling_restart(fleet: Fleet, bounds: Bounds, result: CheckResult) -> None:
    creds = Credentials(fleet)
    cluster = fleet.c
    stopped: list[int | None] = []
    events: list[tuple[float, str]] = []

    def roll() -> None:
        for index in range(cluster.replicas):
            name = cluster.replica_name(index)
            events.append((time.monotonic(), f"SIGTERM {name}"))
            stopped.append(cluster.stop_replica(index))
            events.append((time.monotonic(), f"{name} exited"))
            cluster.start_replica(index)
            events.append((time.monotonic(), f"{name} ready"))
            _wait_all_up(fleet)
            events.append((time.monotonic(), f"{name} UP in HAProxy"))

    started = time.monotonic()
    shots = load.run(steady_load(fleet, creds, bounds, roll))
    result.figure("rolling restart: requests", summary(shots))
    result.figure("rolling restart: took", f"{time.monotonic() - started:.1f} s")
    failed = failures(shots)
    if failed:
        result.note(_timeline(events, failed))
    result.require("0 failed requests", not failed, summary(failed) if failed else 0)
    clean = all(code in (0, -15) for code in stopped)
    result.require("every replica stopped gracefully (SIGTERM)", clean, stopped)


Scenario = Callable[[Fleet, Bounds, CheckResult], None]


def _timeline(events: list[tuple[float, str]], failed: list[Shot]) -> str:
    """The failed requests among the fault's events, in time order (for a failure message)."""
    start = min([t for t, _ in events] + [s.started for s in failed])
    lines = [(t, what) for t, what in events]
    lines += [(s.started, f"request {s.tag} -> {s.label} ({s.detail[:120]})") for s in failed]
    return "; ".join(f"+{t - start:.3f} s {what}" for t, what in sorted(lines))


SCENARIOS: tuple[Scenario, ...] = (
    replay,
    rate_limits,
    store_outage,
    store_memory,
    replica_killed,
    rolling_restart,
)


def run_scenarios(fleet: Fleet, bounds: Bounds, result: CheckResult) -> None:
    for scenario in SCENARIOS:
        print(f"  -- {scenario.__name__}", flush=True)
        scenario(fleet, bounds, result)
        if not redis_ping(fleet.c.redis_port):
            raise RuntimeError(f"Redis is not answering after {scenario.__name__}")


def run(ctx: Context, result: CheckResult) -> None:
    bounds = replace(FULL, live_proofs=500) if ctx.quick else FULL
    with Fleet(ctx.model_path, bounds.limits) as fleet:
        run_scenarios(fleet, bounds, result)
