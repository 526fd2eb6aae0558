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


# --- decoding-cost bombs: cheap to send, refused by the wheel's structure walk ----------------


def jpeg_scan_bomb(repeats: int = 600, size: tuple[int, int] = (4000, 4000)) -> bytes:
    """A real progressive JPEG whose last refinement scan is repeated (about a minute of libjpeg
    CPU per 600 repeats at 16 megapixels, were it decoded)."""
    from tools.hostile import jpeg_scan_bomb as build

    return build(size, repeats=repeats)


def jpeg_coefficient_bomb() -> bytes:
    """Only 18 scans, but together they visit each coefficient of a 16-megapixel 4:4:4 image
    more than 4 times."""
    from tools.hostile import jpeg_scan_bomb as build

    return build((4000, 4000), repeats=8, subsampling=0)


def gif_frames_bomb(frames: int = 20_000) -> bytes:
    """A one-frame GIF whose image block is repeated ``frames`` times before the trailer."""
    gif = encode(Image.new("P", (8, 8), 1), "GIF")
    start = 13 + (3 * (2 << (gif[10] & 7)) if gif[10] & 0x80 else 0)
    while gif[start] == 0x21:  # skip extensions up to the image descriptor
        start += 2
        while gif[start]:
            start += gif[start] + 1
        start += 1
    image_block = gif[start:-1]
    return gif[:start] + image_block * frames + b"\x3b"


def apng_frames_bomb(declared: int = 1_000_000) -> bytes:
    png = valid_png(3, (32, 32))
    actl = _png_chunk(b"acTL", struct.pack(">II", declared, 0))
    return png[:33] + actl + png[33:]


def png_chunks_bomb(chunks: int = 60_000) -> bytes:
    png = valid_png(3, (32, 32))
    return png[:33] + _png_chunk(b"tEXt", b"k\x00v") * chunks + png[33:]


def png_metadata_bomb(size: int = 8 * 1024 * 1024) -> bytes:
    png = valid_png(3, (32, 32))
    return png[:33] + _png_chunk(b"eXIf", random_bytes(size, seed=4)) + png[33:]


def webp_frames_bomb(frames: int = 20_000) -> bytes:
    """An animated WebP whose first ANMF chunk is repeated ``frames`` times."""
    first, second = Image.new("RGB", (8, 8), (9, 9, 9)), Image.new("RGB", (8, 8), (200, 9, 9))
    data = encode(first, "WEBP", save_all=True, append_images=[second], lossless=True)
    pos = 12
    while data[pos : pos + 4] != b"ANMF":
        pos += 8 + ((struct.unpack_from("<I", data, pos + 4)[0] + 1) & ~1)
    size = (struct.unpack_from("<I", data, pos + 4)[0] + 1) & ~1
    body = data[12:pos] + data[pos : pos + 8 + size] * frames + data[pos + 8 + size :]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def tiff_pages_bomb(pages: int = 20_000) -> bytes:
    """A one-page TIFF whose IFD is copied ``pages`` times into a chain."""
    tiff = bytearray(encode(Image.new("RGB", (8, 8), (5, 6, 7)), "TIFF"))
    first = struct.unpack_from("<I", tiff, 4)[0]
    count = struct.unpack_from("<H", tiff, first)[0]
    ifd = bytes(tiff[first : first + 2 + 12 * count])
    offset = len(tiff)
    struct.pack_into("<I", tiff, first + 2 + 12 * count, offset)
    for page in range(pages):
        following = 0 if page == pages - 1 else offset + len(ifd) + 4
        tiff += ifd + struct.pack("<I", following)
        offset += len(ifd) + 4
    return bytes(tiff)


def jpeg_junk_byte_bomb() -> bytes:
    """The 16-megapixel scan bomb behind one junk byte after APP0 (libjpeg skips the byte)."""
    from tools.hostile import jpeg_junk_after_app0

    return jpeg_junk_after_app0(jpeg_scan_bomb())


def jpeg_empty_app15_bomb() -> bytes:
    """The 16-megapixel scan bomb behind an APP15 segment declaring length 0."""
    from tools.hostile import jpeg_empty_app15

    return jpeg_empty_app15(jpeg_scan_bomb())


def gif_stray_byte_bomb(blocks: int = 2_000_000) -> bytes:
    """``blocks`` GIF comment extensions behind one byte that starts no block (10 MB)."""
    from tools.hostile import gif_comment_flood

    return gif_comment_flood(blocks)


def tiff_odd_header_bomb(strips: int = 400_000) -> bytes:
    """400,000 one-row strips in a TIFF whose header is one Pillow accepts but is not valid TIFF
    (``II\\x00\\x2a``)."""
    from tools.hostile import tiff_strip_bomb

    return tiff_strip_bomb(strips, b"II\x00\x2a")


def bmp_rle_bomb(size: int = 1024 * 1024) -> bytes:
    from tools.hostile import rle_bmp_bomb

    return rle_bmp_bomb(size)
