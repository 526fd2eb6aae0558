"""Graceful shutdown: SIGTERM in the middle of a load.

Phase 1 (drain): 32 workers upload continuously, 4 of them as slow clients whose bodies take
~2 s to arrive, so requests are genuinely in flight (some mid-body) when SIGTERM lands. Every
request sent before the signal must end in a 200; from the moment the listener closes, new
connections must be refused (a TCP probe tries every 20 ms while the process is still
draining); the process must exit within GRACEFUL_TIMEOUT_S.

Phase 2 (bounded): a client that never finishes its body must not hold the process past the
grace period: the server exits within GRACEFUL_TIMEOUT_S + margin anyway.

A request sent after the signal that is refused (or dropped unread on a closing keep-alive
connection) was never accepted: it is counted as refused, not failed.
"""

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from reliability import load, payloads
from reliability.checks import Context
from reliability.report import CheckResult
from reliability.stack import LOOPBACK, Api, Issuer

TITLE = "SIGTERM under load: in-flight requests complete, new ones refused, bounded exit"
CONCURRENCY = 32
SLOW_CLIENTS = 4
SLOW_BODY_S = 2.0
DRAIN_GRACE_S = 10  # whole seconds: uvicorn takes an int
STUCK_GRACE_S = 3
WANT_IN_FLIGHT = 24
EXIT_MARGIN_S = 2.0  # interpreter and TensorFlow teardown after uvicorn's grace period ends


@dataclass
class Probe:
    """Raw TCP connection attempts after the signal: (time, accepted?, server still alive?)."""

    attempts: list[tuple[float, bool, bool]] = field(default_factory=list)


def run(ctx: Context, result: CheckResult) -> None:
    load_s = ctx.scale(4, 2)
    with Issuer() as issuer:
        token = issuer.token()
        with Api(issuer, ctx.model_path, GRACEFUL_TIMEOUT_S=DRAIN_GRACE_S, LOG_LEVEL="INFO") as api:
            drained = load.run(_drain(api, token, load_s))
        _judge_drain(result, drained)
        with Api(issuer, ctx.model_path, GRACEFUL_TIMEOUT_S=STUCK_GRACE_S, LOG_LEVEL="INFO") as api:
            stuck = load.run(_stuck(api, token))
        _judge_stuck(result, stuck)


def _slow_body(data: bytes, duration_s: float, pieces: int = 20) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            yield data[i : i + step]
            await asyncio.sleep(duration_s / pieces)

    return gen()


async def _probe(port: int, api: Api, probe: Probe, stop: asyncio.Event) -> None:
    for _ in range(5_000):  # ~100 s at most; ends with the process or the check
        if stop.is_set():
            return
        alive = api.process.alive()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), 1.0)
        except (OSError, TimeoutError):
            probe.attempts.append((time.monotonic(), False, alive))
        else:
            probe.attempts.append((time.monotonic(), True, alive))
            writer.close()
        if not alive:
            return
        await asyncio.sleep(0.02)


async def _drain(api: Api, token: str, load_s: float) -> dict:
    image = payloads.valid_jpeg(3, (640, 480))
    body, ctype = payloads.multipart([("file", "slow.jpg", "image/jpeg", image)])
    url = api.url + "/upload"
    outcomes: list[load.Outcome] = []
    done = asyncio.Event()
    signal_at: list[float] = []
    pending = load.InFlight()

    async with load.client(CONCURRENCY, timeout_s=60) as http:

        async def worker(w: int) -> None:
            slow = w < SLOW_CLIENTS
            for _ in range(10_000):  # bounded; ends when the server is gone
                if done.is_set():
                    return
                if slow:
                    kwargs: dict[str, Any] = {
                        "headers": {"Authorization": f"Bearer {token}", "Content-Type": ctype},
                        "content": _slow_body(body, SLOW_BODY_S),
                    }
                else:
                    kwargs = load.upload_kwargs(token, image)
                outcome = await load.send(
                    http, "POST", url, tag="slow" if slow else "", in_flight=pending, **kwargs
                )
                outcomes.append(outcome)
                if signal_at and outcome.kind != "http":
                    await asyncio.sleep(0.05)  # refused: the server is going away; don't spin

        workers = [asyncio.create_task(worker(w)) for w in range(CONCURRENCY)]
        await asyncio.sleep(load_s)
        # Signal when most workers have a request written and unanswered (batches complete in
        # bursts, so a random instant can catch many workers between two requests).
        for _ in range(500):
            if pending.count >= WANT_IN_FLIGHT:
                break
            await asyncio.sleep(0.002)
        probe, stop_probe = Probe(), asyncio.Event()
        signal_at.append(time.monotonic())
        api.process.signal(signal.SIGTERM)
        prober = asyncio.create_task(_probe(api.port, api, probe, stop_probe))
        exit_code = await asyncio.to_thread(api.process.wait, DRAIN_GRACE_S + 30)
        exit_at = time.monotonic()
        done.set()
        stop_probe.set()
        await asyncio.wait_for(asyncio.gather(*workers, prober), timeout=90)
    return {
        "outcomes": outcomes,
        "signal_at": signal_at[0],
        "exit_at": exit_at,
        "exit_code": exit_code,
        "probe": probe,
        "graceful_log": "Application shutdown complete" in api.process.output(),
    }


def _judge_drain(result: CheckResult, d: dict) -> None:
    signal_at: float = d["signal_at"]
    outcomes: list[load.Outcome] = d["outcomes"]
    # Accepted before the signal = its head was written to an open connection before it.
    before = [o for o in outcomes if o.sent is not None and o.sent < signal_at]
    in_flight = [o for o in before if o.ended >= signal_at]
    after = [o for o in outcomes if o.sent is None or o.sent >= signal_at]
    late_writes = [o for o in after if o.started < signal_at]
    failed = [o for o in before if not o.valid]
    after_5xx = [o for o in after if o.kind == "http" and (o.status or 0) >= 500]
    probe: Probe = d["probe"]
    refused_alive = [a for a in probe.attempts if not a[1] and a[2]]
    first_refusal = min((a[0] for a in probe.attempts if not a[1]), default=None)
    accepted_later = [a for a in probe.attempts if a[1] and first_refusal and a[0] > first_refusal]
    exit_s = d["exit_at"] - signal_at
    listener_closed_s = (first_refusal - signal_at) if first_refusal else float("nan")

    result.figure("requests written before SIGTERM", len(before))
    result.figure(
        "requests started before but written after SIGTERM (not accepted)",
        f"{len(late_writes)} {load.histogram(late_writes)}",
    )
    result.figure(
        "in flight at SIGTERM (of which slow-body uploads)",
        f"{len(in_flight)} ({sum(o.tag == 'slow' for o in in_flight)})",
    )
    result.figure("outcomes of requests written before SIGTERM", load.histogram(before))
    result.figure("outcomes of requests after SIGTERM", load.histogram(after))
    result.figure("listener closed after SIGTERM (s)", f"{listener_closed_s:.2f}")
    result.figure(
        "TCP probes while draining: refused / accepted after first refusal",
        f"{len(refused_alive)} / {len(accepted_later)}",
    )
    result.figure("exit after SIGTERM (s) / exit code", f"{exit_s:.2f} / {d['exit_code']}")
    for o in failed[:8]:
        result.note(
            f"failed: {o.tag or 'upload'} sent {o.started - signal_at:+.3f} s, ended "
            f"{o.ended - signal_at:+.3f} s after SIGTERM -> {o.label} {o.detail[:160]}"
        )

    result.require(
        "requests were in flight at SIGTERM", len(in_flight) >= CONCURRENCY // 2, len(in_flight)
    )
    result.require(
        "0 failed: every request written before SIGTERM got a 200 with a prediction",
        not failed,
        f"{len(failed)} failed of {len(before)}",
    )
    result.require(
        "new connections refused while draining (and never accepted again)",
        bool(refused_alive) and not accepted_later,
        f"{len(refused_alive)} refused while alive, {len(accepted_later)} accepted later",
    )
    result.require("no 5xx after SIGTERM", not after_5xx, f"{len(after_5xx)}")
    result.require(
        f"exit within grace ({DRAIN_GRACE_S:.0f} s) + {EXIT_MARGIN_S:.0f} s",
        exit_s <= DRAIN_GRACE_S + EXIT_MARGIN_S and d["exit_code"] is not None,
        f"{exit_s:.2f} s",
    )
    result.require(
        "shut down through the graceful path (lifespan shutdown logged)",
        d["graceful_log"],
        "'Application shutdown complete' in the API log" if d["graceful_log"] else "not logged",
    )
    result.note(
        f"exit status {d['exit_code']}: uvicorn re-raises the captured SIGTERM once its "
        "graceful shutdown is complete, so the status reports the signal (-15 = SIGTERM), "
        "as process supervisors expect"
    )


async def _stuck(api: Api, token: str) -> dict:
    """A client dribbles its body forever; SIGTERM must still end the process on time."""
    body, ctype = payloads.multipart([("file", "stuck.jpg", "image/jpeg", payloads.valid_jpeg())])
    url = api.url + "/upload"

    async def dribble() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            yield body[i : i + 1]
            await asyncio.sleep(0.5)

    async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
        stuck = asyncio.create_task(
            load.send(
                http,
                "POST",
                url,
                content=dribble(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": ctype},
            )
        )
        await asyncio.sleep(1.0)  # the stuck request is accepted and mid-body
        signal_at = time.monotonic()
        api.process.signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(api.process.wait, STUCK_GRACE_S + 30)
        exit_at = time.monotonic()
        outcome = await asyncio.wait_for(stuck, timeout=30)
    return {"exit_s": exit_at - signal_at, "exit_code": exit_code, "stuck": outcome}


def _judge_stuck(result: CheckResult, s: dict) -> None:
    result.figure(
        "never-finishing upload: exit after SIGTERM (s) / exit code",
        f"{s['exit_s']:.2f} / {s['exit_code']}",
    )
    result.figure("never-finishing upload: its outcome (cut by design)", s["stuck"].label)
    result.require(
        f"exit within grace ({STUCK_GRACE_S:.0f} s) + {EXIT_MARGIN_S:.0f} s despite a stuck client",
        s["exit_s"] <= STUCK_GRACE_S + EXIT_MARGIN_S and s["exit_code"] is not None,
        f"{s['exit_s']:.2f} s",
    )
