"""Builders of hostile image files: decoding-cost bombs and the bypasses of the structure walk.

They live outside the serving wheel (nothing in ``kto.inference`` needs them to serve) and are
shared by the wheel's tests, the API tests, ``reliability/`` and the benchmarks. Each builder
makes a real file that Pillow opens; what it costs to decode and what the wheel answers is
written in ``docs/hostile-input.md``.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

# Every header Pillow's TIFF plugin accepts (``TiffImagePlugin.PREFIXES``). Pillow reads a file
# as BigTIFF only when its third byte is 0x2B, so ``MM\x00\x2b`` is read as a classic TIFF.
TIFF_PREFIXES = (
    b"MM\x00\x2a",
    b"II\x2a\x00",
    b"MM\x2a\x00",
    b"II\x00\x2a",
    b"MM\x00\x2b",
    b"II\x2b\x00",
)


def jpeg_scan_bomb(
    size: tuple[int, int] = (4000, 4000), repeats: int = 600, subsampling: int = 2
) -> bytes:
    """A real progressive JPEG of ``size=(w, h)`` whose last scan is repeated ``repeats`` times.

    The decoding-cost bomb the structure check refuses: each repeat is a few dozen bytes, yet
    libjpeg re-walks every luma coefficient for it (16 megapixels x 600 repeats: about a
    minute of CPU). With ``repeats=0`` it is a plain progressive JPEG (libjpeg's 10 scans).
    """
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 80, 200)).save(
        buffer, format="JPEG", progressive=True, quality=90, subsampling=subsampling
    )
    data = buffer.getvalue()
    start, end = jpeg_scans(data)[-1]
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[start:end] * repeats + data[eoi:]


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """``(marker, start)`` of every marker segment of a well-formed JPEG, SOI excluded."""
    found, pos = [], 2
    while data[pos + 1] != 0xD9:
        marker = data[pos + 1]
        found.append((marker, pos))
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
        pos = end
    return found


def jpeg_scans(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of every scan (SOS segment plus its entropy-coded data)."""
    segments = jpeg_segments(data)
    ends = [start for _, start in segments[1:]] + [data.rindex(b"\xff\xd9")]
    return [
        (start, end) for (marker, start), end in zip(segments, ends, strict=True) if marker == 0xDA
    ]


def jpeg_junk_after_app0(jpeg: bytes, junk: bytes = b"\x00") -> bytes:
    """``jpeg`` with ``junk`` between its first segment (APP0) and the next one.

    libjpeg and Pillow skip bytes that are not a marker (libjpeg warns, "extraneous bytes
    before marker") and decode the rest.
    """
    first_end = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:first_end] + junk + jpeg[first_end:]


def jpeg_empty_app15(jpeg: bytes) -> bytes:
    """``jpeg`` with an APP15 segment that declares length 0 right after SOI.

    libjpeg skips ``length - 2`` bytes, i.e. none, and reads on from the next marker.
    """
    return jpeg[:2] + b"\xff\xef\x00\x00" + jpeg[2:]


def gif_comment_flood(blocks: int = 3_000_000, stray: bytes = b"\x00") -> bytes:
    """A one-pixel GIF with ``stray`` bytes then ``blocks`` empty comment extensions before its
    image. Pillow skips a byte that starts no block and reads every comment in Python."""
    buffer = io.BytesIO()
    Image.new("P", (1, 1), 0).save(buffer, format="GIF")
    gif = buffer.getvalue()
    start = 13 + (3 * (2 << (gif[10] & 7)) if gif[10] & 0x80 else 0)
    return gif[:start] + stray + b"\x21\xfe\x01x\x00" * blocks + gif[start:]


def tiff_strip_bomb(strips: int = 400_000, prefix: bytes = b"II\x2a\x00") -> bytes:
    """A one-pixel-wide greyscale TIFF of ``strips`` rows, one strip per row, with any header
    Pillow accepts (``TIFF_PREFIXES``). Pillow makes one decoder call per strip."""
    if prefix not in TIFF_PREFIXES:
        raise ValueError(f"Pillow does not open a TIFF starting {prefix!r}")
    order = "<" if prefix[:2] == b"II" else ">"
    big = prefix[2] == 0x2B  # as Pillow decides (TiffImageFile._open)
    offset_fmt, count_fmt, head = ("Q", "Q", 16) if big else ("I", "H", 8)
    entry_fmt = "HHQ8s" if big else "HHI4s"
    entry_size = struct.calcsize(order + entry_fmt)
    n_entries = 8
    ifd_at = head
    ifd_size = struct.calcsize(order + count_fmt) + n_entries * entry_size
    ifd_size += struct.calcsize(order + offset_fmt)
    offsets_at = ifd_at + ifd_size
    counts_at = offsets_at + 4 * strips
    pixels_at = counts_at + 4 * strips

    def inline(fmt: str, value: int) -> bytes:
        return struct.pack(order + fmt, value).ljust(8 if big else 4, b"\x00")

    def pointer(value: int) -> bytes:
        return struct.pack(order + offset_fmt, value)

    entries = [
        (256, 4, 1, inline("I", 1)),  # ImageWidth
        (257, 4, 1, inline("I", strips)),  # ImageLength
        (258, 3, 1, inline("H", 8)),  # BitsPerSample
        (259, 3, 1, inline("H", 1)),  # Compression: none
        (262, 3, 1, inline("H", 1)),  # PhotometricInterpretation: black is zero
        (273, 4, strips, pointer(offsets_at)),  # StripOffsets
        (278, 4, 1, inline("I", 1)),  # RowsPerStrip
        (279, 4, strips, pointer(counts_at)),  # StripByteCounts
    ]
    if big:
        header = prefix + struct.pack(order + "HHQ", 8, 0, ifd_at)
    else:
        header = prefix + struct.pack(order + "I", ifd_at)
    ifd = struct.pack(order + count_fmt, n_entries)
    ifd += b"".join(struct.pack(order + entry_fmt, *entry) for entry in entries)
    ifd += pointer(0)
    offsets = struct.pack(f"{order}{strips}I", *range(pixels_at, pixels_at + strips))
    counts = struct.pack(f"{order}{strips}I", *([1] * strips))
    return header + ifd + offsets + counts + bytes(range(256)) * (strips // 256 + 1)


def rle_bmp_bomb(size: int = 1024 * 1024) -> bytes:
    """An 8-bit run-length-encoded BMP of ``size`` bytes of one-pixel runs.

    Pillow decodes BMP RLE in pure Python: about 2 s of CPU per MiB on a 2-core machine.
    """
    width, runs = 2000, bytearray()
    row = b"\x01\x05" * width + b"\x00\x00"
    while len(runs) < size:
        runs += row
    runs += b"\x00\x01"
    height = len(runs) // len(row)
    palette = b"\x00\x00\xff\x00" * 256
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(runs), 2835, 2835, 256, 0)
    header = b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset)
    return header + info + palette + bytes(runs)
