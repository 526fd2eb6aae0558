"""Mutation fuzz of the structure walk: every file it lets through decodes within the bounds.

Valid files and bombs are mutated the ways the walk has been bypassed (junk bytes between
structures, zero lengths, truncations, random bytes). For each mutant the walk accepts, the
work the decoder will do is counted by a reader that skips what libjpeg and Pillow skip (the
"lenient" readers below), and must stay within :data:`DEFAULT_DECODE_LIMITS`; the decoded
pixels must stay within the pixel limit. Counted work, never wall time.
"""

from __future__ import annotations

import collections
import io
import random
import re
from collections.abc import Callable

import pytest
from kto.inference import (
    DEFAULT_DECODE_LIMITS,
    DEFAULT_MAX_PIXELS,
    DecodeLimits,
    ImageTooComplexError,
    InvalidImageError,
    check_structure,
    decode_image,
)
from kto.inference import structure as structure_module
from PIL import Image

from tools.hostile import gif_comment_flood, jpeg_scan_bomb, jpeg_segments, tiff_strip_bomb

SEED = 23
MUTANTS = 480
_UNBOUNDED = DecodeLimits(
    max_jpeg_scans=10**9,
    max_jpeg_coefficient_passes=1e18,
    max_frames=10**9,
    max_chunks=10**9,
    max_metadata_bytes=10**12,
)
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


# --- what the decoder will do, read the way it reads -------------------------------------------


def lenient_jpeg_work(data: bytes) -> tuple[int, float]:
    """(scans, coefficient passes) libjpeg decodes: it skips bytes that start no marker
    (``next_marker``) and reads on after a segment of declared length 0 or 1."""
    jpeg = structure_module._Jpeg(data, _UNBOUNDED)
    pos = 2
    while True:
        found = _MARKER.search(data, pos)  # libjpeg: skip to 0xFF, fill bytes, then a marker
        if found is None or found.start() + 4 > len(data):
            break
        pos, marker = found.start(), data[found.start() + 1]
        if marker == 0xD9:
            break
        if marker == 0x01:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : pos + 2 + length]
        pos += 2 + max(length, 2)
        try:
            if marker in structure_module._SOF:
                jpeg._frame(body)
            elif marker == 0xDA:
                jpeg._scan(body)
        except ImageTooComplexError:
            break  # a second frame: libjpeg stops with an error
    passes = jpeg.visits / jpeg.coefficients if jpeg.coefficients else 0.0
    return jpeg.scans, passes


def lenient_gif_blocks(data: bytes) -> int:
    """Blocks Pillow reads before the first image: it skips any byte that starts no block."""
    pos = 13 + structure_module._colour_table(data[10] if len(data) > 10 else 0)
    blocks = 0
    while pos < len(data) and data[pos] not in (0x2C, 0x3B):
        if data[pos] == 0x21:
            blocks += 1
            pos += 2
            while pos < len(data) and data[pos]:
                pos += 1 + data[pos]
        pos += 1
    return blocks


# --- mutations -----------------------------------------------------------------------------


def _boundaries(data: bytes) -> list[int]:
    """Where one structure ends and the next begins (JPEG segments), else anywhere early."""
    if data.startswith(b"\xff\xd8"):
        try:
            return [start for _, start in jpeg_segments(data)]
        except IndexError:
            pass
    return list(range(8, min(len(data), 200)))


def _junk(rng: random.Random, data: bytes) -> bytes:
    pos = rng.choice(_boundaries(data))
    junk = bytes(rng.choice([0x00, 0x20, 0x41, 0xFE, 0xFF]) for _ in range(rng.randint(1, 3)))
    return data[:pos] + junk + data[pos:]


def _zero_length(rng: random.Random, data: bytes) -> bytes:
    if data.startswith(b"\xff\xd8") and rng.random() < 0.5:
        pos = rng.choice(_boundaries(data))
        return (
            data[:pos]
            + bytes([0xFF, rng.choice([0xE0, 0xEF, 0xFE]), 0, rng.randint(0, 1)])
            + data[pos:]
        )
    pos = rng.choice(_boundaries(data))
    mutated = bytearray(data)
    mutated[pos + 2 : pos + 4] = b"\x00\x00"
    return bytes(mutated)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(16, len(data))]


def _random_byte(rng: random.Random, data: bytes) -> bytes:
    mutated = bytearray(data)
    mutated[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(mutated)


MUTATIONS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _junk,
    _junk,
    _zero_length,
    _truncate,
    _random_byte,
)


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _seeds() -> list[bytes]:
    frames = [Image.new("P", (8, 8), i) for i in range(3)]
    return [
        jpeg_scan_bomb((256, 256), repeats=8, subsampling=0),  # refused: 4+ passes
        jpeg_scan_bomb((128, 128), repeats=100),  # refused: 110 scans
        jpeg_scan_bomb((64, 64), repeats=0),  # a plain progressive JPEG
        _encode(Image.new("RGB", (48, 32), (200, 30, 30)), "JPEG", quality=80),
        gif_comment_flood(20_001, stray=b""),  # refused: blocks
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        _encode(Image.new("RGB", (16, 16), (1, 2, 3)), "PNG"),
        tiff_strip_bomb(20_100, b"II\x00\x2a"),  # refused: strips
        _encode(Image.new("RGB", (8, 8), (5, 6, 7)), "TIFF"),
    ]


def test_every_mutant_the_walk_accepts_decodes_within_the_bounds():
    rng = random.Random(SEED)
    seeds = _seeds()
    limits = DEFAULT_DECODE_LIMITS
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(MUTANTS):
        data = rng.choice(MUTATIONS)(rng, rng.choice(seeds))
        try:
            check_structure(data)
        except InvalidImageError as exc:
            outcomes[exc.reason] += 1
            continue
        outcomes["accepted"] += 1
        if data.startswith(b"\xff\xd8\xff"):  # what Pillow opens as JPEG
            scans, passes = lenient_jpeg_work(data)
            assert scans <= limits.max_jpeg_scans, (scans, data[:64])
            assert passes <= limits.max_jpeg_coefficient_passes, (passes, data[:64])
        elif data.startswith((b"GIF87a", b"GIF89a")):
            assert lenient_gif_blocks(data) <= limits.max_chunks
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                assert len(img.tile) <= limits.max_chunks  # one decoder call per tile/strip
            decoded = decode_image(data, size=(32, 32))
        except InvalidImageError:
            continue  # truncated or corrupt: refused by the decoder, after bounded work
        except Exception as exc:  # only Pillow's own open may fail this way
            assert not isinstance(exc, AssertionError), exc
            continue
        assert width * height <= DEFAULT_MAX_PIXELS
        assert decoded.shape == (32, 32, 3)
    # the fuzz reached every side of the walk
    assert outcomes["accepted"] > 50 and outcomes["unverifiable"] > 50, outcomes
    assert outcomes["too_complex"] > 20, outcomes


@pytest.mark.parametrize("repeats", [8, 100])
def test_the_lenient_reader_counts_what_the_bomb_costs(repeats):
    """The fuzz's reference reader sees the bomb through junk the walk refuses."""
    from tools.hostile import jpeg_junk_after_app0

    bomb = jpeg_junk_after_app0(jpeg_scan_bomb((256, 256), repeats=repeats, subsampling=0))
    scans, passes = lenient_jpeg_work(bomb)
    assert scans == 10 + repeats
    assert passes > DEFAULT_DECODE_LIMITS.max_jpeg_coefficient_passes
