"""The runtimes that execute a model: ONNX Runtime (the fast default), OpenVINO (an optional
extra, on the same ``model.onnx``) and Keras (the reference).

Both take raw 0..255 RGB pixels ``(n, h, w, 3)`` float32 and return probabilities
``(n, n_classes)``; the metadata's normalisation happens inside the backend, so callers of
:class:`kto.inference.Inference` never handle model-space input. Which one runs is decided by
:func:`kto.inference.model.resolve_model` from what the model folder holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from kto.inference.metadata import ModelMetadata

BackendName = Literal["keras", "onnx", "openvino"]
BackendChoice = Literal["auto", "keras", "onnx", "openvino"]
BACKEND_CHOICES: tuple[BackendChoice, ...] = ("auto", "keras", "onnx", "openvino")


class Backend(Protocol):
    """One loaded model; ``predict`` is safe to call from several threads at once."""

    name: BackendName
    native: Any
    """The runtime's own object (``keras.Model``, ``onnxruntime.InferenceSession`` or
    ``openvino.CompiledModel``)."""

    def declared_input_size(self) -> tuple[int, int] | None: ...

    def output_width(self) -> int | None: ...

    def bind(self, metadata: ModelMetadata) -> None:
        """Fix the preprocessing and input size; must run once before :meth:`predict`."""

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def open_backend(name: BackendName, path: Path, threads: int | None = None) -> Backend:
    """Load ``path`` with the named runtime; its package is imported only here."""
    if name == "onnx":
        from kto.inference.backends.onnx_backend import OnnxBackend

        return OnnxBackend(path, threads)
    if name == "openvino":
        from kto.inference.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(path, threads)
    from kto.inference.backends.keras_backend import KerasBackend

    return KerasBackend(path)
