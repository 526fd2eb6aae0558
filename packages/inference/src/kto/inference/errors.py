"""The exceptions the wheel raises; callers map them to user-facing errors in one place.

Every message is written for a person: it says what is wrong and, where possible, what to do.
"""

from __future__ import annotations

from typing import Literal

InvalidImageReason = Literal[
    "empty",
    "not_an_image",
    "truncated",
    "unsupported",
    "too_large",
    "too_complex",
    "unverifiable",
    "too_small",
]


class InferenceError(Exception):
    """Base class of every error raised by ``kto.inference``."""


class InvalidImageError(InferenceError, ValueError):
    """The input cannot be turned into an RGB image.

    ``reason`` is a stable machine-readable code (``empty``, ``not_an_image``, ``truncated``,
    ``unsupported``, ``too_small`` (a side under the caller's ``min_side``), ``too_large`` for
    :class:`ImageTooLargeError`, ``too_complex`` for :class:`ImageTooComplexError`,
    ``unverifiable`` for :class:`ImageUnverifiableError`) so an API can report it without
    parsing the message.
    """

    def __init__(self, message: str, *, reason: InvalidImageReason = "not_an_image") -> None:
        super().__init__(message)
        self.reason: InvalidImageReason = reason


class ImageTooLargeError(InvalidImageError):
    """The image header declares more pixels than allowed (decompression-bomb guard)."""

    def __init__(self, message: str, *, pixels: int | None = None, max_pixels: int) -> None:
        super().__init__(message, reason="too_large")
        self.pixels = pixels
        self.max_pixels = max_pixels


class ImageTooComplexError(InvalidImageError):
    """The file's structure asks for more decoding work than real images do (CPU-bomb guard).

    Raised before any pixel is decoded: too many JPEG scans, frames, chunks or metadata bytes
    (see :class:`kto.inference.structure.DecodeLimits`).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="too_complex")


class ImageUnverifiableError(InvalidImageError):
    """The structure walk cannot follow the file, so its decoding cost cannot be bounded.

    Raised before any pixel is decoded, for bytes that decoders skip without checking (a byte
    that starts no JPEG marker or GIF block, a JPEG segment of length 0...): what follows them
    would be decoded but never counted. Kept apart from ``too_complex``: the file may be cheap,
    it just cannot be shown to be.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="unverifiable")


class ModelLoadError(InferenceError):
    """The model file or its metadata cannot be loaded or does not fit together."""


class ModelOutputError(InferenceError):
    """The model answered with values that are not probabilities (NaN, infinity) for an input.

    No class is ever derived from such a row: an API reports it as a server error, since the
    fault is the model's, not the image's.
    """
