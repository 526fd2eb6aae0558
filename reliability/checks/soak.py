"""Soak: thousands of authenticated uploads at 32 connections; no errors, no memory or fd growth.

Memory and descriptors are read from /proc at two quiet moments, each after the client has
closed its 32 connections and the server has had a second to notice: after the warm-up
(TensorFlow's allocator, the batcher and the thread pools have reached their working size by
then) and after the last request. Same state both times, so any difference is growth.
"""

import asyncio
import time
from collections.abc import Callable

from reliability import load, payloads
from reliability.checks import Context
from reliability.report import CheckResult
from reliability.stack import Api, Issuer

TITLE = "10,000 authenticated /upload requests at 32 connections"
CONCURRENCY = 32
RSS_GROWTH_LIMIT = 0.10
# Tolerance for one-time lazy opens (e.g. a pool's eventfd created on first use): a leak of one
# descriptor per request, or per few thousand requests, still shows well above it.
FD_NOISE = 2
SETTLE_S = 1.0


def run(ctx: Context, result: CheckResult) -> None:
    total = ctx.scale(10_000, 1_000)
    warmup = ctx.scale(1_000, 200)
    with Issuer() as issuer, Api(issuer, ctx.model_path) as api:
        result.figure("API start-up to ready (s)", f"{api.startup_s:.1f}")
        result.figure(
            "RSS / open fds when ready, before any upload", f"{api.rss_mib():.1f} MiB / {api.fds()}"
        )
        token = issuer.token()
        images = [payloads.valid_jpeg(seed) for seed in range(16)]
        phases = load.run(_soak(api, token, images, total, warmup))
        api.check_alive()
    _judge(result, phases, total, warmup)


async def _phase(
    api: Api, token: str, images: list[bytes], n: int, on_progress: Callable[[int], None] | None
) -> tuple[list[load.Outcome], float]:
    """``n`` uploads on a fresh pool of 32 connections, closed again before /proc is read."""
    url = api.url + "/upload"
    async with load.client(CONCURRENCY) as http:

        async def one(i: int) -> load.Outcome:
            kwargs = load.upload_kwargs(token, images[i % len(images)])
            return await load.send(http, "POST", url, **kwargs)

        t0 = time.monotonic()
        outcomes = await load.run_workers(
            one, total=n, concurrency=CONCURRENCY, deadline_s=900, on_progress=on_progress
        )
        elapsed = time.monotonic() - t0
    await asyncio.sleep(SETTLE_S)  # the server notices the closed connections
    return outcomes, elapsed


async def _soak(api: Api, token: str, images: list[bytes], total: int, warmup: int) -> dict:
    samples: list[tuple[int, float]] = []

    def progress(done: int) -> None:
        if done % 1000 == 0:
            samples.append((done, api.rss_mib()))

    warm, warm_s = await _phase(api, token, images, warmup, None)
    rss_warm, fds_warm = api.rss_mib(), api.fds()
    print(
        f"  after warm-up ({len(warm)} requests): RSS {rss_warm:.1f} MiB, {fds_warm} fds",
        flush=True,
    )
    main, main_s = await _phase(api, token, images, total - warmup, progress)
    rss_end, fds_end = api.rss_mib(), api.fds()
    return {
        "warm": warm,
        "main": main,
        "warm_s": warm_s,
        "main_s": main_s,
        "samples": samples,
        "rss_warm": rss_warm,
        "rss_end": rss_end,
        "fds_warm": fds_warm,
        "fds_end": fds_end,
    }


def _judge(result: CheckResult, p: dict, total: int, warmup: int) -> None:
    outcomes: list[load.Outcome] = p["warm"] + p["main"]
    errors = [o for o in outcomes if not o.valid]
    latencies = [o.latency_s * 1000 for o in p["main"]]
    rate_main = len(p["main"]) / p["main_s"] if p["main_s"] else 0.0
    rate_all = len(outcomes) / (p["warm_s"] + p["main_s"])
    growth = (p["rss_end"] - p["rss_warm"]) / p["rss_warm"] if p["rss_warm"] else float("inf")

    result.figure("requests sent / planned", f"{len(outcomes)} / {total}")
    result.figure("status histogram", load.histogram(outcomes))
    result.figure("throughput after warm-up (req/s)", f"{rate_main:.1f}")
    result.figure("throughput overall (req/s)", f"{rate_all:.1f}")
    result.figure(
        "latency p50 / p99 / max (ms)",
        f"{load.percentile(latencies, 50):.0f} / {load.percentile(latencies, 99):.0f}"
        f" / {max(latencies, default=0):.0f}",
    )
    result.figure(f"RSS after {warmup}-request warm-up (MiB)", f"{p['rss_warm']:.1f}")
    result.figure("RSS at end (MiB)", f"{p['rss_end']:.1f}")
    result.figure(
        "RSS every 1,000 requests after warm-up (MiB)",
        ", ".join(f"{mib:.0f}" for _, mib in p["samples"]) or "-",
    )
    result.figure("open fds after warm-up / at end", f"{p['fds_warm']} / {p['fds_end']}")
    if errors:
        result.note(f"first errors: {[(o.label, o.detail[:120]) for o in errors[:5]]}")

    result.require("all planned requests sent", len(outcomes) == total, len(outcomes))
    result.require(
        "0 errors (every response a 200 with a valid prediction)",
        not errors,
        f"{len(errors)} errors",
    )
    result.require(
        f"RSS growth after warm-up < {RSS_GROWTH_LIMIT:.0%}",
        growth < RSS_GROWTH_LIMIT,
        f"{growth:+.1%}",
    )
    result.require(
        f"no fd growth (tolerance {FD_NOISE} for one-time lazy opens)",
        p["fds_end"] - p["fds_warm"] <= FD_NOISE,
        f"{p['fds_end'] - p['fds_warm']:+d}",
    )
