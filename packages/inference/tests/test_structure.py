"""The structure walk refuses files that cost far more to decode than real images, cheaply,
and lets every ordinary file of every accepted format through."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from kto.inference import (
    DEFAULT_DECODE_LIMITS,
    SUPPORTED_FORMATS,
    DecodeLimits,
    ImageTooComplexError,
    ImageUnverifiableError,
    InvalidImageError,
    check_structure,
    decode_image,
)
from kto.inference import structure as structure_module
from PIL import Image, TiffImagePlugin, WebPImagePlugin

from tools.hostile import (
    TIFF_PREFIXES,
    gif_comment_flood,
    jpeg_empty_app15,
    jpeg_junk_after_app0,
    jpeg_scan_bomb,
    tiff_strip_bomb,
)


def _frames(count: int, size: tuple[int, int] = (8, 8)) -> list[Image.Image]:
    return [Image.new("RGB", size, (10 * i % 256, 40, 90)) for i in range(count)]


def _animation(encode, fmt: str, count: int, **params) -> bytes:
    first, *rest = _frames(count)
    return encode(first, fmt, save_all=True, append_images=rest, **params)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with(encode, *chunks: bytes) -> bytes:
    """A small real PNG with extra chunks inserted after IHDR."""
    png = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG")
    ihdr_end = 8 + 12 + 13
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


def _refused(data: bytes, limits: DecodeLimits | None = None) -> ImageTooComplexError:
    with pytest.raises(ImageTooComplexError) as caught:
        decode_image(data, size=(32, 32), limits=limits or DEFAULT_DECODE_LIMITS)
    assert caught.value.reason == "too_complex"
    assert isinstance(caught.value, InvalidImageError)
    return caught.value


# --- JPEG ------------------------------------------------------------------------------------


def test_repeated_refinement_scan_bomb_is_refused_before_decoding():
    bomb = jpeg_scan_bomb((4000, 4000), repeats=600)  # ~160 KB, about a minute of libjpeg CPU
    assert len(bomb) < 200_000
    started = time.perf_counter()
    error = _refused(bomb)
    assert time.perf_counter() - started < 1.0
    assert "JPEG" in str(error) and "re-save" in str(error)


def test_real_progressive_jpegs_are_accepted(encode, noise):
    for subsampling in (0, 2):
        img = noise((16, 12), seed=subsampling).resize((800, 600), Image.Resampling.BICUBIC)
        data = encode(img, "JPEG", progressive=True, quality=90, subsampling=subsampling)
        assert decode_image(data, size=(32, 32)).shape == (32, 32, 3)
    assert decode_image(jpeg_scan_bomb((640, 480), repeats=0), size=(32, 32)).shape == (32, 32, 3)


def test_scan_count_limit_is_configurable():
    plain = jpeg_scan_bomb((64, 64), repeats=0)  # libjpeg's progression: 10 scans
    check_structure(plain, DecodeLimits(max_jpeg_scans=10))
    assert "more than 9 scans" in str(_refused(plain, DecodeLimits(max_jpeg_scans=9)))


def test_coefficient_work_is_bounded_however_few_the_scans():
    # 8 repeats keep the scan count at 18, far under 100, but each coefficient is then
    # visited more than 4 times
    error = _refused(jpeg_scan_bomb((256, 256), repeats=8, subsampling=0))
    assert "visit each coefficient" in str(error)


def test_jpeg_metadata_and_segment_counts_are_bounded(encode):
    jpeg = encode(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG")
    comment = b"\xff\xfe" + struct.pack(">H", 2 + 60_000) + b"x" * 60_000
    many_comments = jpeg[:2] + comment * 80 + jpeg[2:]  # 4.8 MB of COM segments
    assert "metadata" in str(_refused(many_comments))
    tiny = b"\xff\xfe\x00\x02" * 20  # 20 empty COM segments
    assert "segments" in str(_refused(jpeg[:2] + tiny + jpeg[2:], DecodeLimits(max_chunks=10)))


def test_data_after_the_end_of_image_is_not_counted(encode):
    jpeg = encode(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG")
    check_structure(jpeg + jpeg_scan_bomb((64, 64), repeats=300))


def _unverifiable(data: bytes) -> ImageUnverifiableError:
    with pytest.raises(ImageUnverifiableError) as caught:
        decode_image(data, size=(32, 32))
    assert caught.value.reason == "unverifiable"
    assert "structure cannot be verified" in str(caught.value)
    return caught.value


def test_a_junk_byte_between_jpeg_segments_is_unverifiable():
    # libjpeg skips the byte ("extraneous bytes before marker") and decodes all 250 repeats
    bomb = jpeg_scan_bomb((1000, 1000), repeats=250)
    for junk in (b"\x00", b"A", b"\x00\xff"):
        assert "byte that starts no marker" in str(_unverifiable(jpeg_junk_after_app0(bomb, junk)))


def test_a_zero_length_jpeg_segment_is_unverifiable():
    # libjpeg skips length - 2 bytes of APP15, i.e. none, and reads on
    bomb = jpeg_scan_bomb((1000, 1000), repeats=250)
    assert "declared length 0" in str(_unverifiable(jpeg_empty_app15(bomb)))
    assert "declared length 1" in str(_unverifiable(bomb[:2] + b"\xff\xfe\x00\x01" + bomb[2:]))


def test_fill_bytes_before_a_jpeg_marker_are_still_accepted(encode):
    jpeg = encode(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG")
    filled = jpeg_junk_after_app0(jpeg, b"\xff" * 5)  # ITU T.81 B.1.1.2 allows fill bytes
    assert decode_image(filled, size=(8, 8)).shape == (8, 8, 3)


def test_a_jpeg_cut_short_is_left_to_the_decoder():
    bomb = jpeg_scan_bomb((64, 64), repeats=0)
    check_structure(bomb[: len(bomb) - 40])  # everything present was counted
    with pytest.raises(InvalidImageError) as caught:
        decode_image(bomb[: len(bomb) - 40])
    assert caught.value.reason == "truncated"


# --- PNG / APNG ------------------------------------------------------------------------------


def test_apng_frames_are_bounded(encode):
    apng = _animation(encode, "PNG", 5)
    assert decode_image(apng, size=(8, 8)).shape == (8, 8, 3)
    assert "frames" in str(_refused(apng, DecodeLimits(max_frames=4)))


def test_apng_declaring_too_many_frames_is_refused(encode):
    actl = _png_chunk(b"acTL", struct.pack(">II", 5_000, 0))
    assert "5,000 animation frames" in str(_refused(_png_with(encode, actl)))


def test_png_chunks_and_metadata_are_bounded(encode):
    text = _png_chunk(b"tEXt", b"k\x00v")
    assert "chunks" in str(_refused(_png_with(encode, *[text] * 20_001)))
    exif = _png_chunk(b"eXIf", b"\0" * (5 * 1024 * 1024))
    assert "metadata" in str(_refused(_png_with(encode, exif)))
    assert decode_image(_png_with(encode, *[text] * 100), size=(8, 8)).shape == (8, 8, 3)


# --- GIF, WebP, TIFF, BMP --------------------------------------------------------------------


def test_gif_frames_are_bounded(encode):
    gif = _animation(encode, "GIF", 5)
    assert decode_image(gif, size=(8, 8)).shape == (8, 8, 3)
    assert "frames" in str(_refused(gif, DecodeLimits(max_frames=4)))


def test_gif_extension_blocks_are_bounded(encode):
    gif = encode(Image.new("P", (8, 8), 1), "GIF")
    comment = b"\x21\xfe\x01x\x00"
    header_end = 13 + 3 * 2 ** ((gif[10] & 7) + 1)
    forged = gif[:header_end] + comment * 30 + gif[header_end:]
    assert "blocks" in str(_refused(forged, DecodeLimits(max_chunks=20)))


def test_a_stray_byte_before_gif_blocks_is_unverifiable():
    # Pillow skips the byte and reads the 30,000 comments behind it, one by one in Python
    flood = gif_comment_flood(30_000, stray=b"\x00")
    assert "starts no block" in str(_unverifiable(flood))
    assert "blocks" in str(_refused(gif_comment_flood(30_000, stray=b"")))
    assert decode_image(gif_comment_flood(3, stray=b""), size=(8, 8)).shape == (8, 8, 3)


def test_a_png_chunk_type_that_is_not_letters_is_unverifiable(encode):
    assert "not four letters" in str(_unverifiable(_png_with(encode, _png_chunk(b"t\x00Xt", b""))))


def test_webp_animation_frames_are_bounded(encode):
    webp = _animation(encode, "WEBP", 5, lossless=True)
    assert decode_image(webp, size=(8, 8)).shape == (8, 8, 3)
    assert "frames" in str(_refused(webp, DecodeLimits(max_frames=4)))


def test_tiff_pages_are_bounded(encode):
    tiff = _animation(encode, "TIFF", 5)
    assert decode_image(tiff, size=(8, 8)).shape == (8, 8, 3)
    assert "frames or pages" in str(_refused(tiff, DecodeLimits(max_frames=4)))


@pytest.mark.parametrize("prefix", TIFF_PREFIXES, ids=lambda p: p.hex())
def test_every_tiff_header_pillow_opens_gets_the_tiff_bounds(prefix):
    small = tiff_strip_bomb(8, prefix)
    with Image.open(io.BytesIO(small)) as img:  # Pillow opens every one of these
        assert img.format == "TIFF" and img.size == (1, 8)
    assert decode_image(small).shape == (8, 1, 3)
    assert "chunks" in str(_refused(tiff_strip_bomb(25_000, prefix)))


def test_the_tiff_headers_are_pillows_own():
    assert set(TIFF_PREFIXES) == set(TiffImagePlugin.PREFIXES)


def test_tiff_ifd_loop_is_refused(encode):
    tiff = bytearray(encode(Image.new("RGB", (8, 8), (5, 6, 7)), "TIFF"))
    first = struct.unpack_from("<I", tiff, 4)[0]
    count = struct.unpack_from("<H", tiff, first)[0]
    struct.pack_into("<I", tiff, first + 2 + 12 * count, first)  # next IFD: itself
    assert "loops" in str(_refused(bytes(tiff)))


def _set_tiff_tag(tiff: bytearray, tag: int, value: int) -> None:
    """Overwrite the inline value of ``tag`` (a SHORT or LONG) in the first IFD."""
    first = struct.unpack_from("<I", tiff, 4)[0]
    for i in range(struct.unpack_from("<H", tiff, first)[0]):
        entry = first + 2 + 12 * i
        entry_tag, kind = struct.unpack_from("<HH", tiff, entry)
        if entry_tag == tag:
            struct.pack_into("<H" if kind == 3 else "<I", tiff, entry + 8, value)
            return
    raise AssertionError(f"tag {tag} not found")


def test_tiff_old_style_jpeg_compression_is_refused(encode):
    tiff = bytearray(encode(Image.new("RGB", (8, 8), (5, 6, 7)), "TIFF"))
    _set_tiff_tag(tiff, 259, 6)  # Compression: old-style JPEG
    assert "old-style JPEG" in str(_refused(bytes(tiff)))


def test_jpeg_compressed_tiff_strips_get_the_jpeg_checks(encode):
    tiff = encode(Image.new("RGB", (64, 64), (5, 6, 7)), "TIFF", compression="jpeg")
    assert decode_image(tiff, size=(8, 8)).shape == (8, 8, 3)
    forged = bytearray(tiff)
    bomb = jpeg_scan_bomb((64, 64), repeats=8, subsampling=0)
    _set_tiff_tag(forged, 273, len(forged))  # the only strip now holds the bomb
    _set_tiff_tag(forged, 279, len(bomb))
    assert "visit each coefficient" in str(_refused(bytes(forged + bomb)))


def _rle8_bmp(runs: bytes, width: int = 2, height: int = 2) -> bytes:
    palette = b"\x00\x00\xff\x00" + b"\xff\x00\x00\x00" + b"\x00" * 4 * 254
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(runs), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + info + palette + runs


def test_run_length_encoded_bmp_is_bounded():
    rle = _rle8_bmp(b"\x02\x00\x00\x00" + b"\x02\x01\x00\x01")  # two rows, end of bitmap
    assert decode_image(rle, size=(2, 2)).shape == (2, 2, 3)
    assert "run-length" in str(_refused(rle, DecodeLimits(max_bmp_rle_bytes=4)))


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_frames"):
        DecodeLimits(max_frames=0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_walk_is_cheap_on_ordinary_files(encode, noise, fmt):
    img = noise((640, 480)).convert("P" if fmt == "GIF" else "RGB")
    data = encode(img, fmt)
    started = time.perf_counter()
    for _ in range(20):
        check_structure(data)
    assert (time.perf_counter() - started) / 20 < 0.05


def test_truncated_containers_are_left_to_the_decoder(encode):
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF"):
        data = encode(Image.new("RGB", (16, 16), (9, 9, 9)), fmt)
        check_structure(data[: len(data) // 2])
        with pytest.raises(InvalidImageError) as caught:
            decode_image(io.BytesIO(data[: len(data) // 2]))
        assert caught.value.reason != "too_complex"


# --- dispatch: the format Pillow identifies -------------------------------------------------


def _prefixes_pillow_declares() -> dict[str, list[bytes]]:
    """The magic numbers each plugin of SUPPORTED_FORMATS tests for, from Pillow's own code
    where it keeps them in a list."""
    webp = [b"RIFF\x00\x00\x00\x00WEBP" + mode for mode in WebPImagePlugin._VP8_MODES_BY_IDENTIFIER]
    return {
        "JPEG": [b"\xff\xd8\xff"],
        "PNG": [b"\x89PNG\r\n\x1a\n"],
        "GIF": [b"GIF87a", b"GIF89a"],
        "WEBP": webp,
        "BMP": [b"BM"],
        "TIFF": list(TiffImagePlugin.PREFIXES),
    }


def test_every_prefix_pillow_accepts_reaches_a_walk(monkeypatch):
    walked: list[str] = []
    for fmt, walk in list(structure_module._WALKS.items()):
        monkeypatch.setitem(
            structure_module._WALKS, fmt, lambda d, lim, fmt=fmt, walk=walk: walked.append(fmt)
        )
    declared = _prefixes_pillow_declares()
    assert set(declared) == set(SUPPORTED_FORMATS) == set(structure_module._WALKS)
    Image.init()
    for fmt, prefixes in declared.items():
        _, accept = Image.OPEN[fmt]
        for prefix in prefixes:
            data = prefix + bytes(32)
            assert accept(data[:16]), (fmt, prefix)  # Pillow accepts it...
            walked.clear()
            assert check_structure(data) == fmt  # ...and so it is walked as that format
            assert walked == [fmt]


def test_dispatch_agrees_with_pillow_on_mutated_headers():
    """Random one-byte changes to every declared prefix: the walk is chosen exactly when one
    of Pillow's plugins for SUPPORTED_FORMATS accepts the header."""
    import random

    rng = random.Random(23)
    Image.init()
    accepts = {fmt: Image.OPEN[fmt][1] for fmt in SUPPORTED_FORMATS}
    for prefixes in _prefixes_pillow_declares().values():
        for prefix in prefixes:
            for _ in range(40):
                header = bytearray(prefix + bytes(16))
                header[rng.randrange(len(prefix))] = rng.randrange(256)
                data = bytes(header)
                claimed = [fmt for fmt, accept in accepts.items() if accept(data[:16]) is True]
                assert len(claimed) <= 1
                assert structure_module.identify(data) == (claimed[0] if claimed else None)
