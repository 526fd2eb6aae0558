"""decode_image on every kind of input a client may send (generated images, no TensorFlow)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from kto.inference import (
    MIN_CLASSIFIABLE_SIDE,
    ImageTooLargeError,
    InvalidImageError,
    decode_image,
)
from PIL import Image, ImageFile

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A hand-made PNG whose IHDR (valid CRC) declares ``width x height`` but holds one row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    stream = zlib.compressobj()
    one_row = stream.compress(b"\x00" * (1 + 3 * min(width, 1000))) + stream.flush(
        zlib.Z_SYNC_FLUSH
    )
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", one_row)


def assert_colour(pixels: np.ndarray, colour: tuple[int, int, int], tol: int = 0) -> None:
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    diff = np.abs(pixels.astype(int) - np.array(colour)).max()
    assert diff <= tol, f"max channel difference {diff} from {colour}"


# --- colour modes ---------------------------------------------------------------------------


def test_rgba_png_is_composited_on_white(encode):
    img = Image.new("RGBA", (8, 4), (*RED, 255))
    img.paste((*BLUE, 0), (4, 0, 8, 4))  # right half fully transparent
    out = decode_image(encode(img, "PNG"))
    assert out.shape == (4, 8, 3)
    assert_colour(out[:, :4], RED)
    assert_colour(out[:, 4:], WHITE)


def test_half_transparent_pixels_blend_with_white(encode):
    out = decode_image(encode(Image.new("RGBA", (2, 2), (0, 0, 0, 128)), "PNG"))
    assert_colour(out, (127, 127, 127), tol=1)


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_grayscale_becomes_grey_rgb(encode, mode):
    img = Image.new("L", (6, 6), 100 if mode != "1" else 255).convert(mode)
    out = decode_image(encode(img, "PNG"))
    assert_colour(out, (100,) * 3 if mode != "1" else WHITE)


def test_grayscale_jpeg(encode):
    out = decode_image(encode(Image.new("L", (16, 16), 60), "JPEG", quality=95))
    assert_colour(out, (60, 60, 60), tol=2)


def test_palette_gif_keeps_its_colours(encode):
    img = Image.new("P", (4, 2))
    img.putpalette([*RED, *GREEN, *BLUE] + [0] * (256 - 3) * 3)
    img.paste(0, (0, 0, 2, 2))
    img.paste(2, (2, 0, 4, 2))
    out = decode_image(encode(img, "GIF"))
    assert_colour(out[:, :2], RED)
    assert_colour(out[:, 2:], BLUE)


def test_palette_transparency_becomes_white(encode):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([*RED, *GREEN] + [0] * 254 * 3)
    img.paste(0, (0, 0, 2, 4))
    out = decode_image(encode(img, "PNG", transparency=0))
    assert_colour(out[:, :2], WHITE)
    assert_colour(out[:, 2:], GREEN)


def test_cmyk_jpeg_becomes_rgb(encode):
    red_in_cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    out = decode_image(encode(red_in_cmyk, "JPEG", quality=95))
    assert_colour(out, RED, tol=3)


def test_sixteen_bit_png_is_scaled_not_clipped(encode):
    values = np.array([[0, 257 * 64, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(values)
    assert img.mode.startswith("I;16")
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode in {"I;16", "I"}  # really 16-bit on disk
    out = decode_image(data)
    assert out[0, :, 0].tolist() == [0, 64, 128, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_sixteen_bit_big_endian_tiff(encode):
    img = Image.frombytes("I;16B", (2, 1), struct.pack(">HH", 65535, 257 * 10))
    out = decode_image(encode(img, "TIFF"))
    assert out[0, :, 0].tolist() == [255, 10]


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("I", 65535, WHITE),  # 32-bit integer, holding 16-bit data
        ("F", 128.0, (128, 128, 128)),
        ("YCbCr", (76, 85, 255), RED),
        ("LAB", (0, 128, 128), (0, 0, 0)),
        ("PA", (0, 0), WHITE),  # fully transparent palette image
    ],
)
def test_unusual_tiff_modes_become_rgb(encode, mode, value, expected):
    data = encode(Image.new(mode, (4, 4), value), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode
    assert_colour(decode_image(data), expected, tol=2)


# --- orientation, frames, formats -----------------------------------------------------------


def test_exif_orientation_is_applied(encode):
    # Stored 40 wide x 20 high: left half red, right half blue. Orientation 6 means "rotate
    # 90 degrees clockwise to display", so the viewer sees 20 wide x 40 high, red on top.
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_image(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (40, 20, 3)
    assert_colour(out[2:16], RED, tol=8)
    assert_colour(out[24:38], BLUE, tol=8)


def test_broken_exif_does_not_lose_the_image(encode):
    data = encode(Image.new("RGB", (8, 8), GREEN), "JPEG", quality=95, exif=b"Exif\x00\x00junk")
    assert_colour(decode_image(data), GREEN, tol=3)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_image_uses_first_frame(encode, fmt):
    frames = [Image.new("RGB", (10, 10), colour) for colour in (GREEN, RED, BLUE)]
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, **params)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    assert_colour(decode_image(data), GREEN)


def test_webp(encode):
    img = Image.new("RGB", (12, 10), BLUE)
    assert_colour(decode_image(encode(img, "WEBP", lossless=True)), BLUE)
    assert_colour(decode_image(encode(img, "WEBP", quality=90)), BLUE, tol=8)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "PNG"])
def test_other_common_formats(encode, fmt):
    assert_colour(decode_image(encode(Image.new("RGB", (5, 7), GREEN), fmt)), GREEN)


def test_one_pixel_image(encode):
    data = encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG")
    assert decode_image(data).shape == (1, 1, 3)
    assert_colour(decode_image(data, size=(32, 48)), (10, 200, 30))


def test_resize_is_pillow_bilinear_without_reducing_gap(encode, noise):
    img = noise((97, 61))
    expected = img.resize((40, 30), resample=Image.Resampling.BILINEAR, reducing_gap=None)
    out = decode_image(encode(img, "PNG"), size=(30, 40))
    assert out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out, np.asarray(expected))


def test_large_jpeg_is_reduced_while_decoding_to_nearly_the_same_pixels(encode, noise):
    smooth = noise((16, 12), seed=3).resize((2000, 1500), Image.Resampling.BICUBIC)
    data = encode(smooth, "JPEG", quality=95)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    reference = np.asarray(full.resize((80, 60), Image.Resampling.BILINEAR, reducing_gap=None))
    out = decode_image(data, size=(60, 80))  # libjpeg decodes it at 1/8 scale: 250x188
    assert out.shape == (60, 80, 3)
    assert np.abs(out.astype(int) - reference).mean() < 2.0


def test_exif_rotated_large_jpeg_keeps_full_output_size(encode):
    img = Image.new("RGB", (1600, 400), RED)
    img.paste(BLUE, (800, 0, 1600, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed 400 wide x 1600 high, red on top
    out = decode_image(encode(img, "JPEG", exif=exif.tobytes()), size=(200, 50))
    assert out.shape == (200, 50, 3)
    assert_colour(out[10:90], RED, tol=8)
    assert_colour(out[110:190], BLUE, tol=8)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_file(encode, noise, fmt):
    data = encode(noise((64, 64)), fmt)
    with pytest.raises(InvalidImageError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.reason == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_signature_without_body_is_truncated():
    with pytest.raises(InvalidImageError, match="starts like a PNG file") as info:
        decode_image(b"\x89PNG\r\n\x1a\n")
    assert info.value.reason == "truncated"


def test_zero_bytes():
    with pytest.raises(InvalidImageError, match="empty") as info:
        decode_image(b"")
    assert info.value.reason == "empty"


@pytest.mark.parametrize(
    "data",
    [b"hello, this is not an image", b"\x00" * 100, b"%!PS-Adobe-3.0 EPSF-3.0\n"],
    ids=["text", "zeros", "eps-is-refused"],
)
def test_not_an_image(data):
    with pytest.raises(InvalidImageError) as info:
        decode_image(data)
    assert info.value.reason == "not_an_image"
    assert "JPEG, PNG" in str(info.value)


def test_header_claiming_huge_image_is_refused_before_decoding():
    pillow_limit = Image.MAX_IMAGE_PIXELS
    data = png_header_only(100_000, 100_000)
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data)
    assert info.value.reason == "too_large"
    assert isinstance(info.value, InvalidImageError)
    assert pillow_limit == Image.MAX_IMAGE_PIXELS  # Pillow's global was not touched


def test_limit_applies_below_pillows_own_bomb_limit():
    # 8000 x 8000 = 64 Mpx: under Pillow's 89 Mpx warning level, over our 40 Mpx default.
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(png_header_only(8000, 8000))
    assert info.value.pixels == 64_000_000
    assert info.value.max_pixels == 40_000_000
    assert "8000x8000" in str(info.value)


def test_header_within_limit_but_no_data_is_truncated():
    with pytest.raises(InvalidImageError) as info:
        decode_image(png_header_only(100, 100))
    assert info.value.reason == "truncated"


def test_max_pixels_is_configurable(encode):
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=9_999)
    with pytest.raises(ValueError):
        decode_image(data, max_pixels=0)


# --- input kinds ----------------------------------------------------------------------------


def test_accepts_paths_bytes_and_file_objects(encode, tmp_path: Path):
    data = encode(Image.new("RGB", (3, 3), BLUE), "PNG")
    path = tmp_path / "blue.png"
    path.write_bytes(data)
    with path.open("rb") as fh:
        from_file = decode_image(fh)
    inputs = [str(path), path, data, bytearray(data), memoryview(data), io.BytesIO(data)]
    for out in [from_file, *(decode_image(x) for x in inputs)]:
        assert_colour(out, BLUE)


def test_missing_file_is_an_invalid_image(tmp_path: Path):
    with pytest.raises(InvalidImageError, match="cannot read image file"):
        decode_image(tmp_path / "nope.png")


def test_wrong_input_types_are_programming_errors(tmp_path: Path):
    with pytest.raises(TypeError):
        decode_image(42)  # type: ignore[arg-type]
    text = tmp_path / "t.txt"
    text.write_text("x")
    with text.open("r") as fh, pytest.raises(TypeError, match="binary mode"):
        decode_image(fh)  # type: ignore[arg-type]


def test_min_side_is_checked_from_the_header(encode):
    data = encode(Image.new("RGB", (31, 200), (1, 2, 3)), "PNG")
    assert decode_image(data).shape == (200, 31, 3)  # no limit unless asked
    with pytest.raises(InvalidImageError, match="31x200 pixels: too small") as info:
        decode_image(data, min_side=MIN_CLASSIFIABLE_SIDE)
    assert info.value.reason == "too_small"
    assert decode_image(data, min_side=31).shape == (200, 31, 3)
