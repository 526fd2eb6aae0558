"""The hostile payloads are what they claim to be (checked with Pillow, no decode of bombs)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from reliability import payloads


def test_valid_images_decode() -> None:
    for data in (payloads.valid_jpeg(1), payloads.valid_png(2)):
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.mode == "RGB"


def test_png_header_bomb_claims_huge_dimensions_in_a_few_bytes() -> None:
    data = payloads.png_header_bomb(100_000, 90_000)
    assert len(data) < 200
    # Pillow reads the claimed size from the header and refuses before allocating anything.
    with pytest.raises(Image.DecompressionBombError, match="9000000000 pixels"):
        Image.open(io.BytesIO(data))


def test_jpeg_header_bomb_is_a_small_jpeg_with_patched_dimensions() -> None:
    data = payloads.jpeg_header_bomb(65_000, 64_000)
    assert data[:2] == b"\xff\xd8" and len(data) < 5000
    with pytest.raises(Image.DecompressionBombError, match=str(65_000 * 64_000)):
        Image.open(io.BytesIO(data))


def test_large_png_is_small_on_the_wire() -> None:
    data = payloads.large_png(2000, 1500)
    assert len(data) < 100_000
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (2000, 1500)


def test_truncated_image_fails_to_decode() -> None:
    data = payloads.truncated(payloads.valid_png(3), 0.5)
    with pytest.raises(OSError), Image.open(io.BytesIO(data)) as image:
        image.load()


def test_multipart_body_carries_each_part() -> None:
    body, ctype = payloads.multipart([("file", "a.jpg", "image/jpeg", b"\xff\xd8abc")])
    assert ctype == "multipart/form-data; boundary=reliability-boundary"
    assert b'name="file"; filename="a.jpg"' in body
    assert body.endswith(b"--reliability-boundary--\r\n")


@pytest.mark.parametrize(
    ("build", "container", "reason"),
    [
        (payloads.gif_frames_bomb, "GIF", "frames"),
        (payloads.webp_frames_bomb, "WEBP", "frames"),
        (payloads.tiff_pages_bomb, "TIFF", "pages"),
        (payloads.apng_frames_bomb, "PNG", "animation frames"),
        (payloads.png_chunks_bomb, "PNG", "chunks"),
        (payloads.png_metadata_bomb, "PNG", "metadata"),
        (payloads.bmp_rle_bomb, "BMP", "run-length"),
        (lambda: payloads.jpeg_scan_bomb(repeats=600, size=(512, 512)), "JPEG", "coefficient"),
    ],
)
def test_decoding_bombs_are_real_files_the_structure_walk_refuses(build, container, reason):
    from kto.inference import ImageTooComplexError, check_structure

    data = build()
    with Image.open(io.BytesIO(data)) as image:  # a well-formed container: Pillow opens it
        assert image.format == container
    with pytest.raises(ImageTooComplexError, match=reason):
        check_structure(data)


@pytest.mark.parametrize(
    ("build", "container", "reason"),
    [
        (payloads.jpeg_junk_byte_bomb, "JPEG", "unverifiable"),
        (payloads.jpeg_empty_app15_bomb, "JPEG", "unverifiable"),
        (lambda: payloads.gif_stray_byte_bomb(30_000), "GIF", "unverifiable"),
        (lambda: payloads.tiff_odd_header_bomb(25_000), "TIFF", "too_complex"),
    ],
)
def test_bombs_behind_skipped_bytes_are_refused(build, container, reason):
    from kto.inference import InvalidImageError, check_structure

    data = build()
    with Image.open(io.BytesIO(data)) as image:  # Pillow opens each of them
        assert image.format == container
    with pytest.raises(InvalidImageError) as caught:
        check_structure(data)
    assert caught.value.reason == reason
