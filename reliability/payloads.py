"""Upload bodies, good and hostile, made in memory with Pillow and a few hand-built headers.

Everything is generated (deterministically, from a seed) so a fresh clone needs no data set.
"""

import io
import random
import struct
import zlib
from functools import cache

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def photo_like(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A noisy gradient with a dominant colour: not a photograph, but it decodes like one."""
    rng = random.Random(seed)
    base = [rng.randrange(40, 216) for _ in range(3)]
    small = Image.new("RGB", (16, 12))
    small.putdata(
        [tuple(min(255, max(0, c + rng.randrange(-40, 41))) for c in base) for _ in range(16 * 12)]
    )
    return small.resize(size, Image.Resampling.BICUBIC)


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@cache
def valid_jpeg(seed: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    return encode(photo_like(seed, size), "JPEG", quality=85)


@cache
def valid_png(seed: int = 0, size: tuple[int, int] = (256, 256)) -> bytes:
    return encode(photo_like(seed, size), "PNG")


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` fraction of a file, as an interrupted upload leaves it."""
    return data[: max(1, int(len(data) * keep))]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` pixels.

    A decoder that allocates from the header before checking it would ask for ~30 GB here.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_header_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """A real small JPEG whose SOF frame header is patched to claim ``width`` x ``height``."""
    data = bytearray(valid_jpeg(1, (64, 64)))
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            raise ValueError("unexpected JPEG layout")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):  # SOF0/1/2: precision(1) height(2) width(2)
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise ValueError("no SOF marker found")


@cache
def large_png(width: int, height: int) -> bytes:
    """A real PNG of ``width`` x ``height`` pixels that compresses to little (a flat colour).

    Small on the wire, large once decoded: the classic decompression bomb, made honestly.
    """
    return encode(Image.new("RGB", (width, height), (120, 30, 200)), "PNG", compress_level=9)


def random_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def multipart(
    parts: list[tuple[str, str, str, bytes]], boundary: str = "reliability-boundary"
) -> tuple[bytes, str]:
    """A multipart/form-data body from (field, filename, content type, data) parts."""
    chunks: list[bytes] = []
    for field_name, filename, content_type, data in parts:
        chunks.append(
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
        )
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"
