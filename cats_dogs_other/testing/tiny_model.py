"""A tiny deterministic model for tests that need a real Keras model but no real weights.

It lives here, not in the serving wheel (``kto.inference``), because only tests use it: the
wheel's own tests, the API's and the training pipeline's. (Hostile files -- decoding-cost bombs
and the like -- are built by ``tools/hostile.py`` in the repository.)

The model averages the image's colour and maps it to Cat/Dog/Other: mostly red -> "Cat",
mostly green -> "Dog", mostly blue -> "Other", with confident probabilities (pure red gives
~0.9999). It has no backbone and builds in well under a second once TensorFlow is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from kto.inference.metadata import (
    DEFAULT_CLASSES,
    IMAGENET_MEAN,
    Decision,
    ModelMetadata,
    Preprocessing,
)

# With metadata the model sees x / 127.5 - 1 (in [-1, 1]); without it, the fallback's
# ImageNet mean subtraction (about [-124, 152]). The gain keeps logits alike in both cases.
_GAIN = 5.0
_SCALED = Preprocessing("scale", scale=1 / 127.5, offset=-1.0)
_MEAN = Preprocessing("mean_subtract", mean=IMAGENET_MEAN)


def save_tiny_model(
    directory: str | Path,
    *,
    fmt: Literal["keras", "h5"] = "keras",
    input_size: tuple[int, int] = (32, 32),
    with_metadata: bool = True,
    decision: Mapping[str, Any] | None = None,
    name: str = "tiny-colour-model",
    version: str = "0.0.1",
    onnx: bool = False,
    dense: tuple[np.ndarray, np.ndarray] | None = None,
    activation: str = "softmax",
) -> Path:
    """Save the tiny model as ``model.keras`` or ``model.h5`` in ``directory``; return its path.

    ``with_metadata=True`` writes ``metadata.json`` (scale preprocessing, ``input_size``,
    optional ``decision`` rule). ``with_metadata=False`` writes none, so the wheel falls back
    to ``ModelMetadata.fallback`` (mean subtraction, Cat/Dog/Other) at the model's input size;
    the weights are chosen so the colour rule holds either way. ``onnx=True`` also exports
    ``model.onnx`` beside it (needs the ``export`` extra), so the folder serves through ONNX
    Runtime; the returned path is still the Keras file. ``dense=(kernel (3, 3), bias (3,))``
    and ``activation`` replace the last layer, for models that misbehave on purpose (logits,
    NaN for some colours).
    """
    import keras

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prep = _SCALED if with_metadata else _MEAN
    model = _build(
        input_size, gain=_GAIN if with_metadata else _GAIN / 127.5, activation=activation
    )
    if dense is not None:
        model.get_layer("colour_to_class").set_weights([np.asarray(w, np.float32) for w in dense])
    path = directory / f"model.{fmt}"
    if fmt == "keras":
        model.save(path)
    elif fmt == "h5":
        keras.saving.save_model(model, path)  # legacy HDF5, as older Keras models are
    else:
        raise ValueError("fmt must be 'keras' or 'h5'")
    if onnx:
        _export_onnx(model, directory / "model.onnx")
    if with_metadata:
        ModelMetadata(
            name=name,
            version=version,
            classes=DEFAULT_CLASSES,
            input_size=input_size,
            preprocessing=prep,
            decision=Decision(
                threshold=float(decision["threshold"]), fallback=str(decision["fallback"])
            )
            if decision
            else None,
        ).write(directory)
    return path


def _export_onnx(model: Any, path: Path) -> None:
    """Keras' own ONNX export (needs the ``export`` extra). The training pipeline's exporter,
    which pins the opset and verifies the result, is cats_dogs_other.train.onnx_export."""
    import warnings

    height, width = tuple(model.inputs[0].shape)[1:3]
    model(np.zeros((1, height, width, 3), dtype=np.float32))  # Keras exports called models only
    with warnings.catch_warnings():
        # Keras patches tf2onnx for NumPy 2 and NumPy warns about the alias it sets.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        model.export(str(path), format="onnx", verbose=False)


def _build(input_size: tuple[int, int], gain: float, activation: str = "softmax") -> Any:
    import keras

    height, width = input_size
    inputs = keras.Input(shape=(height, width, 3), name="image")
    mean_colour = keras.layers.GlobalAveragePooling2D(name="mean_colour")(inputs)
    dense = keras.layers.Dense(3, activation=activation, name="colour_to_class")
    model = keras.Model(inputs, dense(mean_colour), name="tiny_colour_model")
    dense.set_weights([np.eye(3, dtype=np.float32) * gain, np.zeros(3, dtype=np.float32)])
    return model


def solid_colour_png(rgb: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> bytes:
    """PNG bytes of a ``size=(h, w)`` image of one colour (handy for tiny-model tests)."""
    import io

    from PIL import Image

    height, width = size
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(buffer, format="PNG")
    return buffer.getvalue()
