"""The inference engine: one loaded model, one compiled forward pass, the public result dict."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kto.inference.decoding import DEFAULT_MAX_PIXELS, ImageInput, decode_image
from kto.inference.errors import InvalidImageError, ModelLoadError
from kto.inference.metadata import ModelMetadata, Preprocessing, load_metadata
from kto.inference.model import (
    file_sha256,
    input_size_of,
    load_keras_model,
    output_width_of,
    resolve_model_file,
)
from kto.inference.structure import DEFAULT_DECODE_LIMITS, DecodeLimits

Result = dict[str, Any]
WARMUP_BATCH_SIZES = (1, 8)


class Inference:
    """Load a ``.keras`` / ``.h5`` model once and classify images with it.

    The forward pass is a ``tf.function`` traced once for ``(None, h, w, 3)`` float32 input
    (any batch size, no retracing) and warmed up here, so the first request is not slow.
    ``preprocess`` and ``predict_arrays`` are thread-safe: an API can decode in a pool and run
    the model in a worker thread while its event loop stays free.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_side: int | None = None,
        decode_limits: DecodeLimits = DEFAULT_DECODE_LIMITS,
        warmup: bool = True,
    ) -> None:
        """``min_side``: refuse images with a shorter side (see ``decode_image``); None = any."""
        if max_pixels <= 0:
            raise ValueError("max_pixels must be a positive number of pixels")
        if min_side is not None and min_side < 1:
            raise ValueError("min_side must be a positive number of pixels or None")
        self.min_side = min_side
        self.model_path: Path = resolve_model_file(model_path)
        self.max_pixels = max_pixels
        self.decode_limits = decode_limits
        self.sha256: str = file_sha256(self.model_path)
        self.model = load_keras_model(self.model_path)
        self.metadata: ModelMetadata = load_metadata(self.model_path, input_size_of(self.model))
        self._check_model_fits_metadata()
        self._forward = _compile(self.model, self.metadata)
        if warmup:
            self.warmup()

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.input_size

    def warmup(self, batch_sizes: Iterable[int] = WARMUP_BATCH_SIZES) -> None:
        """Run the compiled graph once per batch size so kernels are built before traffic."""
        height, width = self.input_size
        for n in batch_sizes:
            self.predict_arrays(np.zeros((n, height, width, 3), dtype=np.float32))

    def preprocess(self, image: ImageInput) -> np.ndarray:
        """Decode and resize to float32 ``(h, w, 3)`` raw 0..255 RGB.

        The model's own normalisation (metadata ``preprocessing``) runs inside the compiled
        graph in :meth:`predict_arrays`, so callers only ever handle plain pixels.
        """
        pixels = decode_image(
            image,
            size=self.input_size,
            max_pixels=self.max_pixels,
            min_side=self.min_side,
            limits=self.decode_limits,
        )
        return pixels.astype(np.float32)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` for raw-pixel images ``(n, h, w, 3)``."""
        x = np.asarray(batch, dtype=np.float32)
        height, width = self.input_size
        if x.ndim != 4 or x.shape[1:] != (height, width, 3):
            raise ValueError(f"expected a batch of shape (n, {height}, {width}, 3), got {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.asarray(self._forward(x), dtype=np.float32)

    def to_result(self, probs_row: Sequence[float] | np.ndarray) -> Result:
        """Apply the model's decision rule; ``values`` are plain floats in class order (the
        course contract), ``probabilities`` the same floats keyed by class name."""
        values = [float(p) for p in np.asarray(probs_row, dtype=np.float64).reshape(-1)]
        if len(values) != len(self.classes):
            raise ValueError(f"expected {len(self.classes)} probabilities, got {len(values)}")
        best = int(np.argmax(values))
        prediction = self.classes[best]
        decision = self.metadata.decision
        if decision is not None and values[best] < decision.threshold:
            prediction = decision.fallback
        probabilities = dict(zip(self.classes, values, strict=True))
        return {"prediction": prediction, "values": values, "probabilities": probabilities}

    def execute(self, image: ImageInput) -> Result:
        """Classify one image (path, bytes or binary file object)."""
        probs = self.predict_arrays(self.preprocess(image)[np.newaxis])
        return self.to_result(probs[0])

    def execute_batch(self, images: Sequence[ImageInput]) -> list[Result]:
        """Classify several images in a single forward pass."""
        if not images:
            return []
        arrays = []
        for index, image in enumerate(images):
            try:
                arrays.append(self.preprocess(image))
            except InvalidImageError as exc:
                exc.args = (f"image #{index + 1}: {exc}",)
                raise
        probs = self.predict_arrays(np.stack(arrays))
        return [self.to_result(row) for row in probs]

    def _check_model_fits_metadata(self) -> None:
        declared = input_size_of(self.model)
        if declared is not None and declared != self.input_size:
            raise ModelLoadError(
                f"{self.metadata.source} says input_size {list(self.input_size)} but the model "
                f"expects {list(declared)}"
            )
        width = output_width_of(self.model)
        if width is not None and width != len(self.classes):
            raise ModelLoadError(
                f"the model outputs {width} values but {self.metadata.source} lists "
                f"{len(self.classes)} classes {list(self.classes)}"
            )

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"Inference({str(self.model_path)!r}, name={meta.name!r}, version={meta.version!r}, "
            f"classes={list(meta.classes)}, input_size={list(meta.input_size)})"
        )


def _compile(model: Any, metadata: ModelMetadata) -> Callable[[np.ndarray], np.ndarray]:
    """Trace the model once with a batch-agnostic signature; return a thread-safe callable.

    Calling the concrete function directly (not the polymorphic ``tf.function``) means no
    input can ever trigger a retrace, and concurrent calls from several threads are safe.
    """
    import tensorflow as tf

    height, width = metadata.input_size
    normalise = _graph_preprocessing(metadata.preprocessing)

    @tf.function(
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)],
        reduce_retracing=True,
    )
    def forward(pixels: Any) -> Any:
        return model(normalise(pixels), training=False)

    concrete = forward.get_concrete_function()

    def run(batch: np.ndarray) -> np.ndarray:
        return concrete(tf.convert_to_tensor(batch)).numpy()

    return run


def _graph_preprocessing(prep: Preprocessing) -> Callable[[Any], Any]:
    import tensorflow as tf

    if prep.mode == "scale":
        scale, offset = tf.constant(prep.scale, tf.float32), tf.constant(prep.offset, tf.float32)
        return lambda x: x * scale + offset
    if prep.mode == "mean_subtract":
        mean = tf.constant(prep.mean, tf.float32)
        return lambda x: x - mean
    return lambda x: x
