"""How long can one upload keep a decode thread busy? Prints a table; asserts nothing.

Builds, in memory, files of at most 10 MiB (the API's default upload limit) that push each
bound of :class:`kto.inference.DecodeLimits` (and the 40-megapixel pixel limit) as far as it
goes while still being accepted, plus the bombs it refuses; then times the structure walk
and ``decode_image(data, size=(224, 224))`` (what the API runs per upload), best of
``--repeat``. The slowest accepted file is the worst case an authenticated client can cause
per upload.

    .venv/bin/python packages/inference/bench/bench_decode_bounds.py [--repeat 2]

(the hostile files come from ``tools/hostile.py``, importable through the editable install of
the repository that ``make setup`` makes)
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Callable

import numpy as np
from kto.inference import (
    DEFAULT_DECODE_LIMITS,
    DEFAULT_MAX_PIXELS,
    InvalidImageError,
    check_structure,
    decode_image,
)
from PIL import Image

from tools.hostile import (
    gif_comment_flood,
    jpeg_empty_app15,
    jpeg_junk_after_app0,
    jpeg_scan_bomb,
    rle_bmp_bomb,
    tiff_strip_bomb,
)

TEN_MIB = 10 * 1024 * 1024
SIDE = math.isqrt(DEFAULT_MAX_PIXELS)  # the largest square under the default pixel limit


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _textured(side: int) -> Image.Image:
    """Smooth random texture: JPEG-compressible yet not flat (entropy decoding has work)."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (side // 64, side // 64, 3), dtype=np.uint8))
    return small.resize((side, side), Image.Resampling.BICUBIC)


def _most_scans_accepted() -> bytes:
    """40 Mpx 4:4:4 progressive with as many repeated refinement scans as the limits allow."""
    repeats = 0
    while True:
        candidate = jpeg_scan_bomb((SIDE, SIDE), repeats=repeats + 1, subsampling=0)
        try:
            check_structure(candidate)
        except InvalidImageError:
            return jpeg_scan_bomb((SIDE, SIDE), repeats=repeats, subsampling=0)
        repeats += 1


def _largest_jpeg(progressive: bool) -> bytes:
    """The textured 40 Mpx image at the highest quality that fits in 10 MiB."""
    img = _textured(SIDE)
    for quality in range(95, 20, -5):
        data = _encode(img, "JPEG", quality=quality, subsampling=0, progressive=progressive)
        if len(data) <= TEN_MIB:
            return data
    raise RuntimeError("no quality fits")


def _png_40mpx() -> bytes:
    return _encode(Image.new("RGB", (SIDE, SIDE), (120, 30, 200)), "PNG", compress_level=9)


def _tiff_many_strips() -> bytes:
    """Uncompressed 1-row strips: one Python-level tile per strip in Pillow."""
    side = 1800  # 1800 x 1800 x 3 = 9.7 MB raw, 1800 strips
    return _encode(Image.new("RGB", (side, side), (9, 99, 199)), "TIFF")


def _gif_most_frames() -> bytes:
    first, *rest = [
        Image.new("P", (64, 64), i % 200) for i in range(DEFAULT_DECODE_LIMITS.max_frames)
    ]
    return _encode(first, "GIF", save_all=True, append_images=rest)


def _bmp_rle_at_the_limit() -> bytes:
    return rle_bmp_bomb(DEFAULT_DECODE_LIMITS.max_bmp_rle_bytes - 4096)


CASES: dict[str, Callable[[], bytes]] = {
    "JPEG progressive 4:4:4 40 Mpx, most refinement scans accepted": _most_scans_accepted,
    "JPEG progressive 4:4:4 40 Mpx, textured, <= 10 MiB": lambda: _largest_jpeg(True),
    "JPEG baseline 4:4:4 40 Mpx, textured, <= 10 MiB": lambda: _largest_jpeg(False),
    "PNG 40 Mpx flat": _png_40mpx,
    "WebP lossless 40 Mpx flat": lambda: _encode(
        Image.new("RGB", (SIDE, SIDE), (1, 2, 3)), "WEBP", lossless=True
    ),
    "TIFF uncompressed, 1,800 strips": _tiff_many_strips,
    "GIF 1,000 frames (the limit)": _gif_most_frames,
    "BMP RLE8 just under 128 KiB": _bmp_rle_at_the_limit,
    "bomb: JPEG repeated refinement scan x600 (16 Mpx)": lambda: jpeg_scan_bomb(),
    "bomb: JPEG repeated scan filling 10 MiB": lambda: jpeg_scan_bomb(
        repeats=(TEN_MIB - 200_000) // 31
    ),
    "bypass: JPEG x250 repeated scans (1 Mpx) behind a junk byte after APP0": lambda: (
        jpeg_junk_after_app0(jpeg_scan_bomb((1000, 1000), repeats=250))
    ),
    "bypass: JPEG x250 repeated scans (1 Mpx) behind an APP15 of length 0": lambda: (
        jpeg_empty_app15(jpeg_scan_bomb((1000, 1000), repeats=250))
    ),
    "bypass: GIF 2,000,000 comment blocks behind a stray byte": lambda: gif_comment_flood(
        2_000_000
    ),
    "bypass: TIFF header II\\x00\\x2a, 400,000 strips": lambda: tiff_strip_bomb(
        400_000, b"II\x00\x2a"
    ),
}


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, outcome = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            fn()
            outcome = "decoded"
        except InvalidImageError as exc:
            outcome = f"refused ({exc.reason})"
        best = min(best, time.perf_counter() - started)
    return best, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print("| file | size (KiB) | structure walk (ms) | decode_image to 224x224 (s) | outcome |")
    print("|---|---:|---:|---:|---|")
    worst = (0.0, "")
    for name, build in CASES.items():
        data = build()
        walk_s, _ = _best(lambda d=data: check_structure(d), args.repeat)
        decode_s, outcome = _best(lambda d=data: decode_image(d, size=(224, 224)), args.repeat)
        if outcome == "decoded" and decode_s > worst[0]:
            worst = (decode_s, name)
        size_kib, walk_ms = len(data) // 1024, walk_s * 1000
        print(f"| {name} | {size_kib:,} | {walk_ms:.1f} | {decode_s:.2f} | {outcome} |", flush=True)
    print(f"\nslowest accepted upload: {worst[1]}: {worst[0]:.2f} s")


if __name__ == "__main__":
    main()
