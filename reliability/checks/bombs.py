"""Decoding-cost bombs mixed with valid uploads: the bombs must not slow the valid ones down.

Each bomb is a small, well-formed file whose decoding would cost far more CPU than its size
suggests (a JPEG whose refinement scan is repeated hundreds of times: about a minute of libjpeg
CPU for 160 KB; thousands of GIF/WebP frames or TIFF pages; tens of thousands of PNG chunks;
megabytes of metadata; a run-length BMP that Pillow decodes in Python). The wheel's structure
walk must refuse every one with a 4xx before decoding.

Three phases against the same server, the same valid uploads at the same concurrency: alone,
beside senders of decoys, then beside senders of bombs. A decoy has its bomb's size but is not
an image (zero bytes), so it costs the server the same upload to receive and parse and no
decoding: the decoy phase is the control, and the bombs are judged against it. On 2 cores, two
senders pushing megabytes of body through the HTTP and multipart parsers already slow the
valid uploads down by themselves; what a bomb must not add is decoding work. Passes when every
valid upload succeeds in all phases, every bomb and decoy gets a 4xx, nothing gets a 5xx, and
the p99 latency of the valid uploads with bombs stays within 2x its p99 with decoys (the p99
alone is reported too). Before the structure walk, two of these bombs occupied both decode
threads for a minute each.
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
    # bombs behind bytes the decoders skip: the walk refuses them as unverifiable
    "jpeg_junk_byte_16mp": ("image/jpeg", payloads.jpeg_junk_byte_bomb),
    "jpeg_empty_app15_16mp": ("image/jpeg", payloads.jpeg_empty_app15_bomb),
    "gif_stray_byte_2m_comments": ("image/gif", payloads.gif_stray_byte_bomb),
    "tiff_odd_header_400k_strips": ("image/tiff", payloads.tiff_odd_header_bomb),
}


@cache
def _bomb(name: str) -> bytes:
    return BOMBS[name][1]()


@cache
def _decoy(name: str) -> bytes:
    """As many bytes as the bomb, all zero: not an image, refused before any decoding."""
    return bytes(len(_bomb(name)))


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


async def _mixed_phase(
    api: Api, token: str, total: int, payload: Callable[[str], bytes]
) -> tuple[list[load.Outcome], ...]:
    """The valid phase again, with senders of ``payload(kind)`` looping until it ends."""
    url = api.url + "/upload"
    names = list(BOMBS)
    bombs: list[load.Outcome] = []
    done = asyncio.Event()

    async def bomber(worker: int) -> None:
        async with load.client(1, timeout_s=120) as http:
            i = worker
            while not done.is_set() or i < len(names):  # every kind at least once
                name = names[i % len(names)]
                kwargs = load.upload_kwargs(token, payload(name), ctype=BOMBS[name][0])
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
        _decoy(name)
    with Issuer() as issuer, Api(issuer, ctx.model_path) as api:
        token = issuer.token()
        load.run(_valid_phase(api, token, 40))  # warm-up
        alone, alone_s = load.run(_valid_phase(api, token, total))
        control, decoys = load.run(_mixed_phase(api, token, total, _decoy))
        mixed, bombs = load.run(_mixed_phase(api, token, total, _bomb))
        with httpx.Client(timeout=10, trust_env=False) as http:
            health = http.get(api.url + "/health").status_code
        api.check_alive()
    _report(result, alone, alone_s, control, decoys, mixed, bombs)
    _judge(result, alone + control + mixed, (decoys, bombs), (control, mixed), health)


def _p(outcomes: list[load.Outcome], q: float) -> float:
    return load.percentile([o.latency_s for o in outcomes], q) * 1000


def _report(
    result: CheckResult,
    alone: list[load.Outcome],
    alone_s: float,
    control: list[load.Outcome],
    decoys: list[load.Outcome],
    mixed: list[load.Outcome],
    bombs: list[load.Outcome],
) -> None:
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
        f"decoys (same sizes, not images) x{len(decoys)}",
        f"{load.histogram(decoys)}, slowest answer {_p(decoys, 100):.0f} ms",
    )
    senders = f"{BOMB_CONCURRENCY} senders"
    for label, valid, extra in (
        ("alone", alone, f", {len(alone) / alone_s:.1f} req/s"),
        (f"beside {senders} of decoys", control, f" (x{_ratio(control, alone):.2f} the p99 alone)"),
        (f"beside {senders} of bombs", mixed, f" (x{_ratio(mixed, alone):.2f} the p99 alone)"),
    ):
        result.figure(
            f"valid uploads {label}: {len(valid)} at {VALID_CONCURRENCY} connections",
            f"p50 {_p(valid, 50):.0f} ms, p99 {_p(valid, 99):.0f} ms{extra}",
        )


def _ratio(outcomes: list[load.Outcome], reference: list[load.Outcome]) -> float:
    base = _p(reference, 99)
    return _p(outcomes, 99) / base if base else float("inf")


def _judge(
    result: CheckResult,
    valid: list[load.Outcome],
    senders: tuple[list[load.Outcome], list[load.Outcome]],
    phases: tuple[list[load.Outcome], list[load.Outcome]],
    health: int,
) -> None:
    """``senders``: the decoys' and the bombs' answers; ``phases``: the valid uploads' beside
    each."""
    (decoys, bombs), (control, mixed) = senders, phases
    refused = decoys + bombs
    valid_bad = [o for o in valid if not o.valid]
    refused_bad = [o for o in refused if not (o.kind == "http" and 400 <= (o.status or 0) < 500)]
    five_xx = [o for o in valid + refused if o.kind == "http" and (o.status or 0) >= 500]
    for o in (valid_bad + refused_bad)[:8]:
        result.note(f"unexpected: {o.tag} -> {o.label} {o.detail[:160]}")
    result.require(
        "every valid upload succeeds, alone, among decoys and among bombs",
        not valid_bad,
        f"{len(valid) - len(valid_bad)}/{len(valid)} ok",
    )
    sent = {o.tag for o in bombs}
    result.require(
        "every bomb kind sent, every bomb and decoy refused with a 4xx",
        not refused_bad and sent >= set(BOMBS),
        f"{len(refused) - len(refused_bad)}/{len(refused)} refused",
    )
    result.require("0 responses with a 5xx", not five_xx, len(five_xx))
    ratio = _ratio(mixed, control)
    result.require(
        f"p99 of valid uploads among bombs <= {P99_RATIO_LIMIT:g}x their p99 among decoys",
        ratio <= P99_RATIO_LIMIT,
        f"x{ratio:.2f} ({_p(mixed, 99):.0f} vs {_p(control, 99):.0f} ms)",
    )
    result.require("server alive and healthy afterwards", health == 200, health)
