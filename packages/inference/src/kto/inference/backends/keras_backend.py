"""The reference path: the ``.keras`` / ``.h5`` model run by Keras on TensorFlow.

The forward pass is one concrete ``tf.function`` traced for ``(None, h, w, 3)`` float32 with
the metadata's normalisation inside the graph: any batch size, never a retrace, and safe to
call from several threads. TensorFlow is imported only when such a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from kto.inference.backends import BackendName
from kto.inference.errors import ModelLoadError
from kto.inference.metadata import ModelMetadata, Preprocessing
from kto.inference.model import input_size_of, load_keras_model, output_width_of


class KerasBackend:
    name: BackendName = "keras"

    def __init__(self, path: Path) -> None:
        self.native: Any = load_keras_model(path)
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None

    def declared_input_size(self) -> tuple[int, int] | None:
        return input_size_of(self.native)

    def output_width(self) -> int | None:
        return output_width_of(self.native)

    def bind(self, metadata: ModelMetadata) -> None:
        self._forward = compile_forward(self.native, metadata)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self._forward is None:
            raise ModelLoadError("KerasBackend.bind() must run before predict()")
        return self._forward(batch)


def compile_forward(model: Any, metadata: ModelMetadata) -> Callable[[np.ndarray], np.ndarray]:
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
        return np.asarray(concrete(tf.convert_to_tensor(batch)).numpy(), dtype=np.float32)

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
