"""Write a Keras model's forward pass as ONNX, for the serving wheel's ONNX Runtime backend.

A training-time step, so it lives here and not in the serving wheel: the pipeline's export
(:mod:`cats_dogs_other.train.export`, which also verifies the result against the Keras model)
and the benchmark's stand-in models use it. It goes through Keras' own
``Model.export(format="onnx")`` (tf2onnx on the TensorFlow backend): the graph is the model
alone, with a free batch axis, and the metadata's normalisation stays outside it, applied by
the backend. Needs Keras, TensorFlow, tf2onnx and onnx (train/requirements.txt); nothing is
downloaded and no conversion tool here sends telemetry.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

ONNX_OPSET = 17


def write_onnx(model: Any, path: str | Path, *, opset: int = ONNX_OPSET) -> Path:
    """Export ``model`` (a ``keras.Model`` with one image input) to ``path``; return it."""
    path = Path(path)
    shape = tuple(model.inputs[0].shape)
    height, width = (d or 32 for d in shape[1:3])
    model(np.zeros((1, height, width, 3), dtype=np.float32))  # Keras exports called models only
    with warnings.catch_warnings():
        # Keras patches tf2onnx for NumPy 2 and NumPy warns about the alias it sets.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        model.export(str(path), format="onnx", verbose=False, opset_version=opset)
    return path
