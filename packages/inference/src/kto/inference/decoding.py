"""Turn untrusted image input into an RGB array, never crashing the caller.

This is the ONE decode + resize used by training and serving, so a model sees at serving time
exactly the pixels it was trained on. Resize: Pillow ``BILINEAR`` with ``reducing_gap=None``
(Pillow widens the bilinear filter when shrinking, so this is an antialiased reduction); a JPEG
at least twice the target size is first decoded at 1/2, 1/4 or 1/8 scale by libjpeg (``draft``).

Before Pillow sees the data, :func:`kto.inference.structure.check_structure` walks the file's
container and refuses files whose decoding would cost far more CPU than real images do (JPEG
scan bombs, thousands of frames or chunks, huge metadata), and files it cannot follow. The
walk picks its format the way Pillow does, and the format Pillow then opens must be that one.

No Pillow global is changed: the pixel limit is checked against the header before any pixel
data is decoded, and ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone (it must stay False,
so truncated files are rejected instead of half-grey).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import IO, TypeAlias

import numpy as np
from kto.inference.errors import ImageTooLargeError, ImageUnverifiableError, InvalidImageError
from kto.inference.structure import (
    DEFAULT_DECODE_LIMITS,
    WALKED_FORMATS,
    DecodeLimits,
    check_structure,
    identify,
)
from PIL import Image, ImageOps

ImageInput: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]

DEFAULT_MAX_PIXELS = 40_000_000
# Below this many pixels on a side a photo holds too little to tell a cat from a dog: the
# recommended ``min_side`` for a service (decoding itself accepts any size by default).
MIN_CLASSIFIABLE_SIDE = 32
# Raster formats a camera, phone or browser produces, each with a structure walk. Formats that
# shell out (EPS -> Ghostscript) or are rarely seen in uploads are refused as "not an image".
SUPPORTED_FORMATS = WALKED_FORMATS
_FORMATS_TEXT = "JPEG, PNG, GIF, WebP, BMP or TIFF"
_DISPLAY_NAMES = {"WEBP": "WebP"}
# Pillow names a JPEG with a Multi-Picture index "MPO"; its first frame is the JPEG walked.
_FAMILY = {"MPO": "JPEG"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_TRANSPARENT_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_WHITE = (255, 255, 255)


def read_bytes(image: ImageInput) -> bytes:
    """Accept a path, raw bytes or a binary file object; return the encoded bytes."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, bytearray | memoryview):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        try:
            with open(image, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise InvalidImageError(
                f"cannot read image file {os.fspath(image)!r}: {exc.strerror or exc}",
                reason="not_an_image",
            ) from exc
    read = getattr(image, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("file objects must be opened in binary mode ('rb')")
        return bytes(data)
    raise TypeError(f"expected a path, bytes or a binary file object, got {type(image).__name__}")


def decode_image(
    image: ImageInput,
    size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
    limits: DecodeLimits = DEFAULT_DECODE_LIMITS,
) -> np.ndarray:
    """Decode to uint8 RGB ``(h, w, 3)``, resized to ``size=(h, w)`` when given.

    ``min_side`` refuses (``reason="too_small"``, from the header) an image with a side shorter
    than that many pixels, e.g. :data:`MIN_CLASSIFIABLE_SIDE` for an icon a model would only
    guess at. Raises :class:`InvalidImageError` (``reason`` says why), :class:`ImageTooLargeError`
    or :class:`ImageTooComplexError` (the file's structure exceeds ``limits``).
    Thread-safe: no shared state, and Pillow releases the GIL while decoding and resizing.
    """
    if max_pixels <= 0:
        raise ValueError("max_pixels must be a positive number of pixels")
    data = read_bytes(image)
    if not data:
        raise InvalidImageError("the image is empty (0 bytes); send an image file", reason="empty")
    walked = check_structure(data, limits)
    with _open(data, max_pixels) as img:
        if _FAMILY.get(img.format or "", img.format) != walked:
            raise ImageUnverifiableError(
                f"the image's structure cannot be verified: Pillow reads it as {img.format}, "
                f"not as the {walked} file that was checked; re-save it with a common encoder"
            )
        if min_side is not None and min(img.size) < min_side:
            width, height = img.size
            raise InvalidImageError(
                f"the image is {width}x{height} pixels: too small to classify (at least "
                f"{min_side} pixels on each side are needed); send a larger image",
                reason="too_small",
            )
        if size is not None:
            _reduce_jpeg_while_decoding(img, size)
        rgb = _to_rgb(_load_upright(img, max_pixels))
    if size is not None:
        rgb = resize(rgb, size)
    return np.asarray(rgb, dtype=np.uint8)


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The resize shared by training and serving: Pillow bilinear, ``reducing_gap=None``."""
    height, width = size
    if img.size == (width, height):
        return img
    return img.resize((width, height), resample=Image.Resampling.BILINEAR, reducing_gap=None)


def _reduce_jpeg_while_decoding(img: Image.Image, size: tuple[int, int]) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while staying at least ``size``.

    A 12 Mpx phone photo then decodes several times faster and in a fraction of the memory;
    images already near the model's size are untouched. The square request keeps the result
    large enough whichever way EXIF rotation (applied later) turns it.
    """
    if img.format in {"JPEG", "MPO"}:
        side = max(size)
        img.draft(None, (side, side))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Identify the format and check the declared size; no pixel data is decoded yet."""
    try:
        img = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(None, max_pixels) from exc
    except Exception as exc:  # a malformed header can raise almost anything inside a plugin
        raise _unreadable(data) from exc
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise _too_large(width * height, max_pixels, (width, height))
    return img


def _unreadable(data: bytes) -> InvalidImageError:
    claimed = identify(data)
    if claimed:
        claimed = _DISPLAY_NAMES.get(claimed, claimed)
        return InvalidImageError(
            f"the data starts like a {claimed} file but is truncated or corrupt; "
            "upload the complete file again",
            reason="truncated",
        )
    return InvalidImageError(
        f"the data is not a supported image; send a {_FORMATS_TEXT} file", reason="not_an_image"
    )


def _load_upright(img: Image.Image, max_pixels: int) -> Image.Image:
    """Decode the first frame and apply the EXIF orientation."""
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(None, max_pixels) from exc
    except (OSError, EOFError, SyntaxError) as exc:
        raise InvalidImageError(
            "the image data is truncated or corrupt; upload the complete file again",
            reason="truncated",
        ) from exc
    except Exception as exc:
        raise InvalidImageError(
            f"the image cannot be decoded ({type(exc).__name__}); send a {_FORMATS_TEXT} file",
            reason="unsupported",
        ) from exc
    # A broken EXIF block must not cost the whole image. In place: no copy when upright.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(img, in_place=True)
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """16-bit is scaled (not clipped) to 8-bit; transparency is composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    try:
        if mode in _SIXTEEN_BIT_MODES:
            return _sixteen_bit_to_rgb(img)
        if mode == "F":
            grey = np.clip(np.asarray(img, dtype=np.float32), 0, 255).round().astype(np.uint8)
            return Image.fromarray(grey).convert("RGB")
        if mode in _TRANSPARENT_MODES or (mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
        if img.mode == "RGBA":
            background = Image.new("RGBA", img.size, (*_WHITE, 255))
            return Image.alpha_composite(background, img).convert("RGB")
        return img.convert("RGB")
    except Exception as exc:
        raise InvalidImageError(
            f"images in colour mode {mode!r} are not supported; convert it to RGB first",
            reason="unsupported",
        ) from exc


def _sixteen_bit_to_rgb(img: Image.Image) -> Image.Image:
    """Map 0..65535 to 0..255 (Pillow's own convert would clip everything above 255 to white)."""
    values = np.asarray(img).astype(np.float64)
    grey = np.clip(values / 257.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))


def _too_large(
    pixels: int | None, max_pixels: int, size: tuple[int, int] | None = None
) -> ImageTooLargeError:
    declared = f" ({size[0]}x{size[1]} = {pixels:,} pixels)" if size and pixels else ""
    return ImageTooLargeError(
        f"the image is too large{declared}; the limit is {max_pixels:,} pixels, "
        "send a smaller image",
        pixels=pixels,
        max_pixels=max_pixels,
    )
