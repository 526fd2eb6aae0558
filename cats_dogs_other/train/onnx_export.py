"""A Keras model's forward pass as ONNX (Keras' ``Model.export``, tf2onnx, free batch axis; the
metadata's normalisation stays outside it): a training step, so not in the serving wheel."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

ONNX_OPSET = 17


def write_onnx(model: Any, path: str | Path, *, opset: int = ONNX_OPSET) -> Path:
    height, width = (d or 32 for d in tuple(model.inputs[0].shape)[1:3])
    model(np.zeros((1, height, width, 3), dtype=np.float32))  # Keras exports called models only
    with warnings.catch_warnings():  # Keras patches tf2onnx for NumPy 2; NumPy warns of it
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        model.export(str(path), format="onnx", verbose=False, opset_version=opset)
    return Path(path)
