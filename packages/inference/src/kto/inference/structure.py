"""A cheap walk of an image file's structure, run before any pixel is decoded.

Why: some files cost far more CPU to decode than their size or pixel count suggest, and a
libjpeg or libwebp call cannot be interrupted once it runs in a thread. A progressive JPEG whose
last refinement scan is repeated hundreds of times (53 bytes per repeat) makes libjpeg re-walk
every coefficient of the image per repeat: a 16-megapixel file of 160 KB measured 66 s. So the
container is read first -- markers, chunks, blocks, IFDs, never pixel data -- and a file that
asks for more work than any real encoder writes is refused with :class:`ImageTooComplexError`.

What is bounded (:class:`DecodeLimits`; defaults in parentheses):

* JPEG: scans (100; libjpeg's progressive mode writes 10, mozjpeg about a dozen) and the
  coefficient work of all scans together: each DCT coefficient may be visited at most
  ``max_jpeg_coefficient_passes`` times (4; a libjpeg progressive file visits each 2.3-2.7
  times, a baseline file once); one frame; marker segments (``max_chunks``).
* PNG: chunks (``max_chunks``), APNG frames (``max_frames``, from ``acTL`` and ``fcTL``).
* GIF: frames, extension blocks, and data sub-blocks (the walk itself stays linear and short).
* WebP: RIFF chunks and animation frames (``ANMF``).
* TIFF: pages (IFDs, EXIF/GPS sub-IFDs included, loops refused), tags and strips or tiles
  (``max_chunks``); old-style JPEG compression is refused, and the JPEG stream of every strip
  of a JPEG-compressed first page gets the JPEG checks above.
* BMP: run-length-encoded pixel data (``max_bmp_rle_bytes``, 128 KiB): Pillow decodes RLE in
  pure Python, about 2 s per MiB on a 2-core machine.
* Metadata (EXIF, XMP, ICC, text and unknown chunks, JPEG APPn/COM, TIFF tag values) in total:
  ``max_metadata_bytes`` (4 MiB).

The walk reads only lengths and a few header fields (regular-expression search over JPEG
entropy-coded data, one step per chunk elsewhere), so it costs milliseconds for a 10 MiB file.

It fails closed. The format is the one Pillow itself identifies (the ``accept`` test of each
plugin, on the same 16-byte prefix ``Image.open`` reads), so no header Pillow opens escapes a
walk. Where the walk meets bytes it cannot follow while data remains -- a byte that starts no
JPEG marker or GIF block, a JPEG segment declaring a length under 2, a PNG chunk type that is
not four letters -- the file is refused with :class:`ImageUnverifiableError`: libjpeg and
Pillow skip such bytes and decode what follows, which the walk would not have counted. Only
0xFF fill bytes before a JPEG marker are skipped, as the JPEG standard allows. A walk that
simply runs out of data has counted everything there is; the decoder then reports the
truncated file as usual.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import NoReturn

from kto.inference.errors import ImageTooComplexError, ImageUnverifiableError
from PIL import Image

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """How much structure one image may have. Every field is a positive count or size."""

    max_jpeg_scans: int = 100
    max_jpeg_coefficient_passes: float = 4.0
    max_frames: int = 1_000
    max_chunks: int = 20_000
    max_metadata_bytes: int = 4 * MiB
    max_bmp_rle_bytes: int = 128 * KiB

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"DecodeLimits.{field.name} must be positive")


DEFAULT_DECODE_LIMITS = DecodeLimits()


def check_structure(data: bytes, limits: DecodeLimits = DEFAULT_DECODE_LIMITS) -> str | None:
    """Walk ``data`` as the format Pillow identifies; return that format's name.

    Raises :class:`ImageTooComplexError` when the file asks for more work than ``limits``, and
    :class:`ImageUnverifiableError` when the walk cannot follow it. Returns None when no walked
    format claims the data (Pillow will not open it with ``formats=WALKED_FORMATS`` either).
    """
    fmt = identify(data)
    if fmt is not None:
        _WALKS[fmt](data, limits)
    return fmt


def identify(data: bytes) -> str | None:
    """The format ``Image.open(..., formats=WALKED_FORMATS)`` would pick, from the header only.

    Pillow's own identification: each plugin's ``accept`` test on the first 16 bytes, in
    Pillow's order, without running the plugin's header parser (GIF's reads every block up to
    the first image, in Python).
    """
    Image.init()  # registers TIFF and WebP; a no-op once done
    prefix = data[:16]
    for fmt in Image.ID:
        if fmt not in _WALKS:
            continue
        _, accept = Image.OPEN[fmt]
        verdict = accept(prefix) if accept else True
        if verdict and not isinstance(verdict, str):
            return fmt
    return None


class _Budget:
    """Counts what a walk has seen and refuses the file as soon as one limit is passed."""

    def __init__(self, fmt: str, limits: DecodeLimits) -> None:
        self.fmt = fmt
        self.limits = limits
        self.chunks = 0
        self.frames = 0
        self.metadata = 0

    def chunk(self, n: int = 1) -> None:
        self.chunks += n
        if self.chunks > self.limits.max_chunks:
            self.refuse(f"more than {self.limits.max_chunks:,} chunks, blocks or segments")

    def frame(self, n: int = 1) -> None:
        self.frames += n
        if self.frames > self.limits.max_frames:
            self.refuse(f"more than {self.limits.max_frames:,} frames or pages")

    def meta(self, size: int) -> None:
        self.metadata += max(0, size)
        if self.metadata > self.limits.max_metadata_bytes:
            self.refuse(f"more than {self.limits.max_metadata_bytes:,} bytes of metadata")

    def refuse(self, what: str) -> NoReturn:
        raise ImageTooComplexError(
            f"the {self.fmt} file has {what}, more than real images need and costly to decode; "
            "re-save it with a common encoder (one frame, no extra metadata)"
        )

    def unverifiable(self, what: str, pos: int) -> NoReturn:
        raise ImageUnverifiableError(
            f"the image's structure cannot be verified: the {self.fmt} file has {what} at byte "
            f"{pos:,}, which decoders skip without checking; re-save it with a common encoder"
        )


# --- JPEG ----------------------------------------------------------------------------------

# The next marker after entropy-coded data: 0xFF not followed by a stuffed 0x00, a restart
# marker or another 0xFF (fill bytes before a marker).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class _Jpeg:
    """Follows the marker segments of one JPEG stream up to its EOI, as libjpeg reads it."""

    def __init__(self, data: bytes, limits: DecodeLimits, budget: _Budget | None = None) -> None:
        self.data = data
        self.limits = limits
        self.budget = budget or _Budget("JPEG", limits)
        self.scans = 0
        self.blocks: dict[int, int] = {}  # component id -> 8x8 blocks
        self.coefficients = 0
        self.visits = 0

    def walk(self, pos: int) -> None:
        data, end = self.data, len(self.data)
        while pos + 4 <= end:
            if data[pos] != 0xFF:
                self.budget.unverifiable("a byte that starts no marker", pos)
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte before a marker (ITU T.81 B.1.1.2)
                pos += 1
                continue
            if marker == 0xD9:  # EOI: libjpeg reads nothing after it
                return
            if marker in _STANDALONE:
                pos += 2
                continue
            if marker == 0x00:  # 0xFF 0x00 is no marker: libjpeg skips it
                self.budget.unverifiable("a byte that starts no marker", pos)
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            if length < 2:  # libjpeg reads on right after the length field
                self.budget.unverifiable(f"a segment of declared length {length}", pos)
            self.budget.chunk()
            body = data[pos + 4 : pos + 2 + length]
            pos += 2 + length
            if 0xE0 <= marker <= 0xEF or marker == 0xFE:
                self.budget.meta(length - 2)
            elif marker in _SOF:
                self._frame(body)
            elif marker == 0xDA:
                self._scan(body)
                found = _NEXT_MARKER.search(data, pos)
                if found is None:
                    return
                pos = found.start()

    def _frame(self, body: bytes) -> None:
        if self.blocks:
            self.budget.refuse("more than one frame")
        if len(body) < 6:
            return
        height, width, count = struct.unpack_from(">HHB", body, 1)
        components = [body[6 + 3 * i : 9 + 3 * i] for i in range(count)]
        components = [c for c in components if len(c) == 3]
        if not components:
            return
        h_max = max(c[1] >> 4 for c in components) or 1
        v_max = max(c[1] & 15 for c in components) or 1
        for ident, sampling, _ in components:
            cols = -(-width * (sampling >> 4) // h_max)
            rows = -(-height * (sampling & 15) // v_max)
            self.blocks[ident] = -(-cols // 8) * -(-rows // 8)
        self.coefficients = 64 * sum(self.blocks.values())

    def _scan(self, body: bytes) -> None:
        self.scans += 1
        if self.scans > self.limits.max_jpeg_scans:
            self.budget.refuse(f"more than {self.limits.max_jpeg_scans} scans")
        if not body or not self.coefficients:
            return
        count = body[0]
        if len(body) < 1 + 2 * count + 3:
            return
        start, stop = body[1 + 2 * count], min(body[2 + 2 * count], 63)
        band = max(stop, start) - start + 1
        self.visits += band * sum(self.blocks.get(body[1 + 2 * i], 0) for i in range(count))
        passes = self.visits / self.coefficients
        if passes > self.limits.max_jpeg_coefficient_passes:
            self.budget.refuse(
                f"scans that visit each coefficient more than "
                f"{self.limits.max_jpeg_coefficient_passes:g} times"
            )


# --- PNG, GIF, WebP, BMP ---------------------------------------------------------------------

_PNG_IMAGE_CHUNKS = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"acTL", b"fcTL", b"fdAT"}
)


def _check_png(data: bytes, limits: DecodeLimits) -> None:
    budget = _Budget("PNG", limits)
    pos, end = 8, len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        budget.chunk()
        if not kind.isalpha():
            budget.unverifiable(f"a chunk type {kind!r} that is not four letters", pos + 4)
        if kind == b"IEND":
            return
        if kind == b"acTL" and length >= 4:
            declared = int.from_bytes(data[pos + 8 : pos + 12], "big")
            if declared > limits.max_frames:
                budget.refuse(f"{declared:,} animation frames declared")
        elif kind == b"fcTL":
            budget.frame()
        elif kind not in _PNG_IMAGE_CHUNKS:
            budget.meta(length)
        pos += 12 + length


def _check_gif(data: bytes, limits: DecodeLimits) -> None:
    budget = _Budget("GIF", limits)
    # Sub-blocks carry at most 255 bytes; counting them keeps this walk linear in real files
    # (a 10 MiB GIF of full sub-blocks has 41,000) and short in forged ones.
    sub_blocks_left = max(100_000, len(data) // 128)
    end = len(data)
    pos = 13 + _colour_table(data[10] if end > 10 else 0)
    while pos < end:
        block = data[pos]
        if block == 0x3B:  # trailer
            return
        budget.chunk()
        if block not in (0x21, 0x2C):
            budget.unverifiable("a byte that starts no block", pos)
        if block == 0x21:
            if pos + 1 >= end:
                return
            label = data[pos + 1]
            pos, size, sub_blocks_left = _skip_sub_blocks(data, pos + 2, sub_blocks_left, budget)
            if label in (0xFE, 0xFF):  # comment, application (XMP, ICC...)
                budget.meta(size)
        else:
            if pos + 10 > end:
                return
            budget.frame()
            pos += 10 + _colour_table(data[pos + 9]) + 1  # descriptor, table, LZW code size
            pos, _, sub_blocks_left = _skip_sub_blocks(data, pos, sub_blocks_left, budget)


def _colour_table(flags: int) -> int:
    return 3 * (2 << (flags & 7)) if flags & 0x80 else 0


def _skip_sub_blocks(data: bytes, pos: int, left: int, budget: _Budget) -> tuple[int, int, int]:
    total, end = 0, len(data)
    while pos < end:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
        total += size
        left -= 1
        if left < 0:
            budget.refuse("too many data sub-blocks")
    return pos, total, left


_WEBP_IMAGE_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"})


def _check_webp(data: bytes, limits: DecodeLimits) -> None:
    budget = _Budget("WebP", limits)
    pos, end = 12, len(data)
    while pos + 8 <= end:
        kind, size = struct.unpack_from("<4sI", data, pos)
        budget.chunk()
        if kind == b"ANMF":
            budget.frame()
        elif kind not in _WEBP_IMAGE_CHUNKS:
            budget.meta(size)
        pos += 8 + size + (size & 1)


def _check_bmp(data: bytes, limits: DecodeLimits) -> None:
    if len(data) < 34:
        return
    offset, header_size = struct.unpack_from("<II", data, 10)
    compression = struct.unpack_from("<I", data, 30)[0] if header_size >= 40 else 0
    if compression in (1, 2) and len(data) - offset > limits.max_bmp_rle_bytes:
        _Budget("BMP", limits).refuse(
            f"more than {limits.max_bmp_rle_bytes:,} bytes of run-length-encoded pixels"
        )


# --- TIFF ------------------------------------------------------------------------------------

# Bytes per value of each TIFF field type (unknown types are skipped by Pillow, size 0 here).
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_TIFF_TYPE_SIZES |= {13: 4, 16: 8, 17: 8, 18: 8}
_TIFF_FORMATS = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q"}
_COMPRESSION, _OLD_JPEG, _JPEG = 259, 6, 7
_DATA_OFFSETS = frozenset({273, 324})  # StripOffsets, TileOffsets
_DATA_COUNTS = frozenset({279, 325})  # StripByteCounts, TileByteCounts
_SUB_IFDS = frozenset({330, 34665, 34853, 40965})  # SubIFDs, EXIF, GPS, Interoperability


class _Tiff:
    """Follows the IFD chain (and EXIF/GPS/sub-IFDs) of a classic or BigTIFF file."""

    def __init__(self, data: bytes, limits: DecodeLimits) -> None:
        self.data = data
        self.limits = limits
        self.budget = _Budget("TIFF", limits)
        # As Pillow reads the header (TiffImageFile._open): byte order from the first two
        # bytes, BigTIFF when the third is 0x2B, the version field otherwise ignored.
        self.order = "<" if data[:2] == b"II" else ">"
        self.big = data[2] == 0x2B
        self.offset_format = "Q" if self.big else "I"

    def walk(self) -> None:
        first = self._read(self.offset_format, 8 if self.big else 4)
        if first is None:
            return
        pending, seen = [first], set()
        while pending:
            offset = pending.pop()
            if not offset:
                continue
            if offset in seen:
                self.budget.refuse("an IFD chain that loops")
            seen.add(offset)
            self.budget.frame()
            pending.extend(self._ifd(offset, decoded=len(seen) == 1))

    def _ifd(self, offset: int, *, decoded: bool) -> list[int]:
        """Account for one IFD; return the IFDs it points to (next page and sub-IFDs)."""
        count_format, entry_size = ("Q", 20) if self.big else ("H", 12)
        count = self._read(count_format, offset)
        if count is None:
            return []
        self.budget.chunk(count)
        start = offset + (8 if self.big else 2)
        read = (self._entry(start + i * entry_size) for i in range(count))
        entries = [entry for entry in read if entry is not None]
        tags = {tag: (kind, n, where) for tag, kind, n, where in entries}
        linked: list[int] = []
        for tag, kind, n, where in entries:
            if tag in _DATA_OFFSETS:
                self.budget.chunk(n)
            elif tag in _SUB_IFDS:
                linked.extend(self._values(kind, min(n, self.limits.max_frames), where))
            elif tag not in _DATA_COUNTS and n * _TIFF_TYPE_SIZES.get(kind, 0) > self._inline:
                self.budget.meta(n * _TIFF_TYPE_SIZES.get(kind, 0))
        compression = tags.get(_COMPRESSION)
        scheme = self._values(*compression)[:1] if compression else []
        if scheme == [_OLD_JPEG]:
            self.budget.refuse("old-style JPEG compression (TIFF 6.0 section 22)")
        if decoded and scheme == [_JPEG]:
            self._check_jpeg_data(tags)
        following = self._read(self.offset_format, start + count * entry_size)
        return [*linked, following or 0]

    @property
    def _inline(self) -> int:
        return 8 if self.big else 4

    def _entry(self, pos: int) -> tuple[int, int, int, int] | None:
        head = self._unpack("HH" + ("Q" if self.big else "I"), pos)
        if head is None:
            return None
        tag, kind, n = head
        value_at = pos + (12 if self.big else 8)
        if n * _TIFF_TYPE_SIZES.get(kind, 0) > self._inline:
            pointer = self._read(self.offset_format, value_at)
            value_at = pointer if pointer is not None else len(self.data)
        return tag, kind, n, value_at

    def _values(self, kind: int, n: int, where: int) -> list[int]:
        fmt = _TIFF_FORMATS.get(kind)
        if fmt is None:
            return []
        values = self._unpack(fmt * n, where)
        return list(values) if values else []

    def _check_jpeg_data(self, tags: dict[int, tuple[int, int, int]]) -> None:
        """Each strip or tile is its own JPEG stream: it gets the JPEG checks."""
        for offsets_tag, counts_tag in ((273, 279), (324, 325)):
            if offsets_tag in tags and counts_tag in tags:
                offsets = self._values(*tags[offsets_tag])
                counts = self._values(*tags[counts_tag])
                for offset, size in zip(offsets, counts, strict=False):
                    stream = self.data[offset : offset + size]
                    if stream.startswith(b"\xff\xd8"):
                        _Jpeg(stream, self.limits, self.budget).walk(2)

    def _read(self, fmt: str, pos: int) -> int | None:
        values = self._unpack(fmt, pos)
        return values[0] if values else None

    def _unpack(self, fmt: str, pos: int) -> tuple[int, ...] | None:
        try:
            return struct.unpack_from(self.order + fmt, self.data, pos)
        except struct.error:
            return None


def _walk_tiff(data: bytes, limits: DecodeLimits) -> None:
    _Tiff(data, limits).walk()


def _walk_jpeg(data: bytes, limits: DecodeLimits) -> None:
    _Jpeg(data, limits).walk(2)


# Pillow format name -> walk. ``decoding.SUPPORTED_FORMATS`` is exactly these keys.
_WALKS: dict[str, Callable[[bytes, DecodeLimits], None]] = {
    "JPEG": _walk_jpeg,
    "PNG": _check_png,
    "GIF": _check_gif,
    "WEBP": _check_webp,
    "BMP": _check_bmp,
    "TIFF": _walk_tiff,
}
WALKED_FORMATS = tuple(_WALKS)
