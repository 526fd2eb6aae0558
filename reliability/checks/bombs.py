"""Decoding-cost bombs mixed with valid uploads: the bombs must not slow the valid ones down.

Each bomb is a small, well-formed file whose decoding would cost far more CPU than its size
suggests (a JPEG whose refinement scan is repeated hundreds of times: about a minute of libjpeg
CPU for 160 KB; thousands of GIF/WebP frames or TIFF pages; tens of thousands of PNG chunks;
megabytes of metadata; a run-length BMP that Pillow decodes in Python). The wheel's structure
walk must refuse every one with a 4xx before decoding.

Two phases against the same server, the same valid uploads at the same concurrency: first
alone, then with bomb senders running beside them. Passes when every valid upload succeeds in
both phases, every bomb gets a 4xx, nothing gets a 5xx, and the p99 latency of the valid
uploads with bombs stays within 2x its p99 without. Before the structure walk, two of these
bombs occupied both decode threads for a minute each.
"""

import asyncio
import time
from collections.abc import Callable
from functools import cache

import httpx

from reliability import load, payloads
from reliability.checks import Context
from reliability.report import CheckResult
from reliability.stack import Api, Issuer

TITLE = "decoding-cost bombs mixed with valid uploads"
VALID_CONCURRENCY = 8
BOMB_CONCURRENCY = 2
P99_RATIO_LIMIT = 2.0
TEN_MIB = 10 * 1024 * 1024

BOMBS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "jpeg_repeated_scan_16mp": ("image/jpeg", payloads.jpeg_scan_bomb),
    # the same bomb filling a whole 10 MiB upload: about 330,000 repeated scans
    "jpeg_repeated_scan_10mib": (
        "image/jpeg",
        lambda: payloads.jpeg_scan_bomb(repeats=(TEN_MIB - 200_000) // 31),
    ),
    "jpeg_coefficient_passes": ("image/jpeg", payloads.jpeg_coefficient_bomb),
    "gif_20k_frames": ("image/gif", payloads.gif_frames_bomb),
    "apng_1m_frames_declared": ("image/png", payloads.apng_frames_bomb),
    "png_60k_chunks": ("image/png", payloads.png_chunks_bomb),
    "png_8mib_exif": ("image/png", payloads.png_metadata_bomb),
    "webp_20k_frames": ("image/webp", payloads.webp_frames_bomb),
    "tiff_20k_pages": ("image/tiff", payloads.tiff_pages_bomb),
    "bmp_1mib_rle": ("image/bmp", payloads.bmp_rle_bomb),
}


@cache
def _bomb(name: str) -> bytes:
    return BOMBS[name][1]()


async def _valid_phase(api: Api, token: str, total: int) -> tuple[list[load.Outcome], float]:
    url = api.url + "/upload"
    images = [payloads.valid_jpeg(seed) for seed in range(8)]
    async with load.client(VALID_CONCURRENCY) as http:

        async def one(i: int) -> load.Outcome:
            kwargs = load.upload_kwargs(token, images[i % len(images)])
            return await load.send(http, "POST", url, tag="valid", **kwargs)

        started = time.monotonic()
        outcomes = await load.run_workers(
            one, total=total, concurrency=VALID_CONCURRENCY, deadline_s=600
        )
        return outcomes, time.monotonic() - started


async def _mixed_phase(api: Api, token: str, total: int) -> tuple[list[load.Outcome], ...]:
    """The valid phase again, with bomb senders looping until it ends."""
    url = api.url + "/upload"
    names = list(BOMBS)
    bombs: list[load.Outcome] = []
    done = asyncio.Event()

    async def bomber(worker: int) -> None:
        async with load.client(1, timeout_s=120) as http:
            i = worker
            while not done.is_set() or i < len(names):  # every kind at least once
                name = names[i % len(names)]
                kwargs = load.upload_kwargs(token, _bomb(name), ctype=BOMBS[name][0])
                bombs.append(await load.send(http, "POST", url, tag=name, **kwargs))
                i += BOMB_CONCURRENCY

    senders = [asyncio.ensure_future(bomber(w)) for w in range(BOMB_CONCURRENCY)]
    try:
        valid, _ = await _valid_phase(api, token, total)
    finally:
        done.set()
        await asyncio.gather(*senders)
    return valid, bombs


def run(ctx: Context, result: CheckResult) -> None:
    total = ctx.scale(600, 120)
    for name in BOMBS:  # built before any timing starts
        _bomb(name)
    with Issuer() as issuer, Api(issuer, ctx.model_path) as api:
        token = issuer.token()
        load.run(_valid_phase(api, token, 40))  # warm-up
        alone, alone_s = load.run(_valid_phase(api, token, total))
        mixed, bombs = load.run(_mixed_phase(api, token, total))
        with httpx.Client(timeout=10, trust_env=False) as http:
            health = http.get(api.url + "/health").status_code
        api.check_alive()
    _judge(result, alone, alone_s, mixed, bombs, health)


def _judge(
    result: CheckResult,
    alone: list[load.Outcome],
    alone_s: float,
    mixed: list[load.Outcome],
    bombs: list[load.Outcome],
    health: int,
) -> None:
    p99_alone = load.percentile([o.latency_s for o in alone], 99) * 1000
    p99_mixed = load.percentile([o.latency_s for o in mixed], 99) * 1000
    p50_alone = load.percentile([o.latency_s for o in alone], 50) * 1000
    p50_mixed = load.percentile([o.latency_s for o in mixed], 50) * 1000
    ratio = p99_mixed / p99_alone if p99_alone else float("inf")
    by_kind: dict[str, list[load.Outcome]] = {name: [] for name in BOMBS}
    for o in bombs:
        by_kind[o.tag].append(o)
    for name, outcomes in by_kind.items():
        worst = max((o.latency_s for o in outcomes), default=0.0) * 1000
        result.figure(
            f"{name} ({len(_bomb(name)) // 1024:,} KiB) x{len(outcomes)}",
            f"{load.histogram(outcomes)}, slowest answer {worst:.0f} ms",
        )
    result.figure(
        f"valid uploads alone: {len(alone)} at {VALID_CONCURRENCY} connections",
        f"p50 {p50_alone:.0f} ms, p99 {p99_alone:.0f} ms, {len(alone) / alone_s:.1f} req/s",
    )
    result.figure(
        f"valid uploads with {BOMB_CONCURRENCY} bomb senders: {len(mixed)}, {len(bombs)} bombs",
        f"p50 {p50_mixed:.0f} ms, p99 {p99_mixed:.0f} ms (x{ratio:.2f} the p99 alone)",
    )
    valid_bad = [o for o in alone + mixed if not o.valid]
    bombs_bad = [o for o in bombs if not (o.kind == "http" and 400 <= (o.status or 0) < 500)]
    five_xx = [o for o in alone + mixed + bombs if o.kind == "http" and (o.status or 0) >= 500]
    for o in (valid_bad + bombs_bad)[:8]:
        result.note(f"unexpected: {o.tag} -> {o.label} {o.detail[:160]}")
    result.require(
        "every valid upload succeeds, alone and among bombs",
        not valid_bad,
        f"{len(alone) + len(mixed) - len(valid_bad)}/{len(alone) + len(mixed)} ok",
    )
    result.require(
        "every bomb kind sent and refused with a 4xx",
        not bombs_bad and all(by_kind.values()),
        f"{len(bombs) - len(bombs_bad)}/{len(bombs)} refused",
    )
    result.require("0 responses with a 5xx", not five_xx, len(five_xx))
    result.require(
        f"p99 of valid uploads among bombs <= {P99_RATIO_LIMIT:g}x the p99 alone",
        ratio <= P99_RATIO_LIMIT,
        f"x{ratio:.2f} ({p99_mixed:.0f} vs {p99_alone:.0f} ms)",
    )
    result.require("server alive and healthy afterwards", health == 200, health)
