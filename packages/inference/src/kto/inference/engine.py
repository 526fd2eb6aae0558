"""The inference engine: one loaded model, one forward pass, the public result dict."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kto.inference.backends import BackendChoice, BackendName, open_backend
from kto.inference.decoding import DEFAULT_MAX_PIXELS, ImageInput, decode_image
from kto.inference.errors import InvalidImageError, ModelLoadError, ModelOutputError
from kto.inference.metadata import ModelMetadata, load_metadata
from kto.inference.model import (
    FileDigests,
    Precision,
    PrecisionChoice,
    decide_precision,
    resolve_model,
)
from kto.inference.structure import DEFAULT_DECODE_LIMITS, DecodeLimits

Result = dict[str, Any]
WARMUP_BATCH_SIZES = (1, 8)
# How far a row of probabilities may sum from 1 (float32 softmax rounding is ~1e-7 per class).
PROBABILITY_SUM_TOLERANCE = 1e-3


class Inference:
    """Load a model once and classify images with it.

    ``model_path`` is a model folder, a ``.keras`` / ``.h5`` file (run by Keras, the reference
    path) or an exported ``.onnx`` file (run by ONNX Runtime, no TensorFlow needed). A folder is
    served from its ``model.int8.onnx`` when its metadata.json's ``int8`` record says that file
    is the default and matches (``precision="auto"``), else its
    ``model.onnx``; ``backend="keras"`` or ``"onnx"`` forces one runtime, ``precision`` one file
    (see :func:`kto.inference.model.resolve_model`). ``threads`` sizes ONNX Runtime's pool
    (None: one per core); Keras uses :func:`kto.inference.configure_threads`.

    The forward pass accepts any batch size without recompiling and is warmed up here, so the
    first request is not slow. ``preprocess`` and ``predict_arrays`` are thread-safe: an API
    can decode in a pool and run the model in a worker thread while its event loop stays free.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_side: int | None = None,
        decode_limits: DecodeLimits = DEFAULT_DECODE_LIMITS,
        warmup: bool = True,
        backend: BackendChoice = "auto",
        threads: int | None = None,
        precision: PrecisionChoice = "auto",
        digests: FileDigests | None = None,
    ) -> None:
        """``min_side``: refuse images with a shorter side (see ``decode_image``); None = any.
        ``precision``: ``auto`` serves a folder's quantized ``model.int8.onnx`` where its
        int8 record makes it the default and the runtime is ONNX Runtime, else float32
        (:func:`decide_precision`; ``precision_reason`` says why); ``"f32"`` or ``"int8"``
        pins one. ``digests``: the :class:`FileDigests` of a caller that already checked the
        model's files (each is hashed once); kept as ``self.digests``."""
        if max_pixels <= 0:
            raise ValueError("max_pixels must be a positive number of pixels")
        if min_side is not None and min_side < 1:
            raise ValueError("min_side must be a positive number of pixels or None")
        self.min_side = min_side
        self.digests = FileDigests() if digests is None else digests
        decision = decide_precision(model_path, backend, precision, digests=self.digests)
        self.precision: Precision = decision.precision
        self.precision_reason: str = decision.reason
        kind, self.model_path = resolve_model(
            model_path, backend, self.precision, digests=self.digests
        )
        self.backend: BackendName = kind
        self.max_pixels = max_pixels
        self.decode_limits = decode_limits
        self.sha256: str = self.digests.sha256(self.model_path)
        self._runtime = open_backend(kind, self.model_path, threads)
        self.metadata: ModelMetadata = load_metadata(
            self.model_path, self._runtime.declared_input_size()
        )
        self._check_model_fits_metadata()
        self._runtime.bind(self.metadata)
        if warmup:
            self.warmup()

    @property
    def model(self) -> Any:
        """The runtime's own model object: a ``keras.Model`` or an ONNX Runtime session."""
        return self._runtime.native

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.input_size

    def warmup(self, batch_sizes: Iterable[int] = WARMUP_BATCH_SIZES) -> None:
        """Run the model once per batch size so kernels are built before traffic, and check
        that what it answers are probabilities: a model that outputs logits, NaN or infinity
        fails here (:class:`ModelLoadError`) instead of answering every request wrongly."""
        height, width = self.input_size
        for n in batch_sizes:
            probs = self.predict_arrays(np.zeros((n, height, width, 3), dtype=np.float32))
            self._check_probabilities(probs)

    def _check_probabilities(self, probs: np.ndarray) -> None:
        source = f"the model {self.model_path.name}"
        if not np.all(np.isfinite(probs)):
            raise ModelLoadError(
                f"{source} outputs NaN or infinity for a blank image; check its weights and "
                f"{self.metadata.source}'s preprocessing"
            )
        sums = probs.astype(np.float64).sum(axis=1)
        worst = float(sums[np.argmax(np.abs(sums - 1.0))]) if len(sums) else 1.0
        if abs(worst - 1.0) > PROBABILITY_SUM_TOLERANCE:
            raise ModelLoadError(
                f"{source} outputs rows that sum to {worst:.6g}, not 1: its last layer must be "
                "a softmax (probabilities, not logits)"
            )

    def preprocess(self, image: ImageInput) -> np.ndarray:
        """Decode and resize to float32 ``(h, w, 3)`` raw 0..255 RGB.

        The model's own normalisation (metadata ``preprocessing``) runs inside the backend in
        :meth:`predict_arrays`, so callers only ever handle plain pixels.
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
        return np.asarray(self._runtime.predict(x), dtype=np.float32)

    def to_result(self, probs_row: Sequence[float] | np.ndarray) -> Result:
        """Apply the model's decision rule; ``values`` are plain floats in class order (what
        clients index by position), ``probabilities`` the same floats keyed by class name.

        The decision rule reads the model's own probabilities; ``values`` are calibrated when
        the metadata has a calibration (which never changes the argmax)."""
        raw = np.asarray(probs_row, dtype=np.float64).reshape(-1)
        if len(raw) != len(self.classes):
            raise ValueError(f"expected {len(self.classes)} probabilities, got {len(raw)}")
        if not np.isfinite(raw).all():
            raise ModelOutputError(
                "the model answered NaN or infinity for this image, so no class can be given; "
                "the model or its preprocessing is at fault, not the image"
            )
        best = int(np.argmax(raw))
        prediction = self.classes[best]
        decision = self.metadata.decision
        if decision is not None and raw[best] < decision.threshold:
            prediction = decision.fallback
        calibration = self.metadata.calibration
        if calibration is not None:
            raw = calibration.apply(raw, self.classes)
        values = [float(p) for p in raw]
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
        declared = self._runtime.declared_input_size()
        if declared is not None and declared != self.input_size:
            raise ModelLoadError(
                f"{self.metadata.source} says input_size {list(self.input_size)} but the model "
                f"expects {list(declared)}"
            )
        width = self._runtime.output_width()
        if width is not None and width != len(self.classes):
            named = ", ".join(self.classes[:5]) + (", ..." if len(self.classes) > 5 else "")
            raise ModelLoadError(
                f"the model outputs {width} values but {self.metadata.source} lists "
                f"{len(self.classes):,} classes ({named[:120]})"
            )

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"Inference({str(self.model_path)!r}, backend={self.backend!r}, "
            f"precision={self.precision!r}, name={meta.name!r}, "
            f"version={meta.version!r}, "
            f"classes={list(meta.classes)}, input_size={list(meta.input_size)})"
        )
