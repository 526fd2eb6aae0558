"""From image bytes to the wheel's answer, keeping the event loop free.

Decoding runs in the lifespan's thread pool (Pillow releases the GIL), inference in the
micro-batcher's thread; the loop only awaits. Errors from the wheel become 415/422 answers that
name the offending part.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from kto.inference import InvalidImageError

from cats_dogs_other.api.errors import BadImageError, UnsupportedMediaError, UploadError
from cats_dogs_other.api.resources import Resources

UNSUPPORTED_REASONS = frozenset({"not_an_image", "unsupported"})


def image_error(exc: InvalidImageError, part: int | None) -> UploadError:
    """415 for what is not an image we read; 422 for an image that is empty, cut, too big,
    too costly to decode (``too_complex``) or whose structure cannot be verified
    (``unverifiable``). The wheel's message, which says which, is the answer's detail."""
    where = f"File {part}: " if part is not None else ""
    message = f"{where}{exc}"
    if getattr(exc, "reason", None) in UNSUPPORTED_REASONS:
        return UnsupportedMediaError(message, part=part)
    return BadImageError(message, part=part)


async def decode(resources: Resources, data: bytes, part: int | None = None) -> np.ndarray:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            resources.decode_pool, resources.inference.preprocess, data
        )
    except InvalidImageError as exc:
        raise image_error(exc, part) from None


async def predict_one(resources: Resources, data: bytes) -> dict[str, Any]:
    # The batcher gets the decode step itself: a full queue refuses before decoding is spent, and
    # a batch waits only for requests that are still decoding, so a lone request runs at once.
    row = await resources.batcher.submit(decode(resources, data))
    return _counted(resources, resources.inference.to_result(row))


async def predict_many(resources: Resources, files: list[bytes]) -> list[dict[str, Any]]:
    """All parts admitted together (or refused together, before any decoding), decoded in
    parallel and submitted together, so they share batches.

    One bad part fails the whole request with an error naming its index (the lowest among the
    parts that failed): a partial list would make clients pair results with files by position
    and get it wrong.
    """
    rows = await resources.batcher.submit_many(
        [decode(resources, data, part) for part, data in enumerate(files)]
    )
    return [_counted(resources, resources.inference.to_result(row)) for row in rows]


def _counted(resources: Resources, result: dict[str, Any]) -> dict[str, Any]:
    """The drift signals: answers per class and the top probability (fixed bucket edges)."""
    if resources.metrics is not None:
        resources.metrics.prediction(result["prediction"], max(result["values"], default=0.0))
    return result
