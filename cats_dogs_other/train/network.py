"""The network, from standard Keras layers only (no Lambda or custom layer: the file loads
anywhere, the ONNX export has no custom op). Preprocessing lives inside the backbone (Rescaling
to [-1, 1]), so the saved model takes raw RGB 0..255 and training and serving cannot drift."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.config import BACKBONES, Backbone
from cats_dogs_other.train.errors import WeightsError

__all__ = ["BACKBONES", "FamiliarityGate", "assemble", "build_backbone", "build_head"]

SLOPE = 100.0
"""Steepness of the gate's step: ``m`` goes from 0.12 to 0.88 within +-0.02 of the threshold,
and the largest ONNX-vs-Keras similarity difference (~1e-6) moves a probability by under 1e-4."""
WEIGHTS_HELP = (
    "Pass --weights PATH to mobilenet_v2_1.0_224_no_top.weights.h5 (see "
    "../shared/weights/README.md) or set CDO_SHARED_DIR."
)


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def blend(
    probs: np.ndarray, similarity: np.ndarray, threshold: float, fallback: int, slope: float
) -> np.ndarray:
    """``m * p + (1 - m) * onehot(fallback)``, ``m = sigmoid(slope * (similarity - threshold))``."""
    m = 1.0 / (1.0 + np.exp(np.clip(-slope * (similarity - threshold), -60.0, 60.0)))
    onehot = np.zeros(probs.shape[1], np.float32)
    onehot[fallback] = 1.0
    return (m[:, None] * probs + (1.0 - m)[:, None] * onehot).astype(np.float32)


@dataclass(frozen=True)
class FamiliarityGate:
    """Moves an image unlike every training pet (cosine to the nearest prototype, (k, d) unit
    vectors, below ``threshold``) to the fallback class: see familiarity.py."""

    prototypes: np.ndarray
    threshold: float
    fallback: int
    slope: float = SLOPE

    def similarity(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(unit_rows(features) @ self.prototypes.T).max(axis=1)

    def apply(self, probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        return blend(probs, self.similarity(features), self.threshold, self.fallback, self.slope)


def build_backbone(kind: Backbone, input_size: tuple[int, int], weights: Path | None = None) -> Any:
    """A frozen feature extractor of raw 0..255 RGB. ``tiny`` (two random convolutions, the
    first one linear so its mean carries the mean colour) needs no weights: the whole pipeline
    runs in seconds, offline, in the tests."""
    import keras

    layers = keras.layers
    inputs = keras.Input(shape=(*input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
    if kind == "mobilenet_v2":
        base = keras.applications.MobileNetV2(
            include_top=False, weights=None, input_shape=(*input_size, 3), pooling="avg"
        )
        _load_weights(base, weights)
        x = base(x, training=False)
    elif kind == "tiny":
        low = layers.Conv2D(8, 3, strides=2, name="tiny_conv1")(x)
        conv = layers.Conv2D(16, 3, strides=2, activation="relu", name="tiny_conv2")(low)
        colour = layers.GlobalAveragePooling2D(name="tiny_colour")(low)
        pooled = layers.GlobalAveragePooling2D(name="tiny_pool")(conv)
        x = layers.Concatenate(name="tiny_features")([colour, pooled])
    else:
        raise ValueError(f"unknown backbone {kind!r}; choose one of {', '.join(BACKBONES)}")
    backbone = keras.Model(inputs, x, name=f"{kind}_backbone")
    backbone.trainable = False
    return backbone


def _load_weights(base: Any, weights: Path | None) -> None:
    if weights is None:
        raise WeightsError("the mobilenet_v2 backbone needs --weights (an ImageNet .weights.h5)")
    weights = Path(weights)
    if not weights.is_file():
        raise WeightsError(f"backbone weights not found: {weights}\n{WEIGHTS_HELP}")
    if not weights.name.endswith(".weights.h5"):
        raise WeightsError(f"{weights}: expected a Keras 3 '.weights.h5' file")
    try:
        base.load_weights(weights)
    except Exception as exc:  # h5py/keras raise many types for a wrong or damaged file
        raise WeightsError(
            f"cannot load backbone weights from {weights}: {exc}\nThe file must hold "
            "MobileNetV2 (alpha 1.0, no top) weights in Keras 3 format."
        ) from exc


def build_augmenter(seed: int) -> Any:
    """Photometric and geometric jitter a phone photo of a pet plausibly has; on 0..255 pixels."""
    import keras

    layers, reflect = keras.layers, {"fill_mode": "reflect"}
    jitter = [
        partial(layers.RandomFlip, "horizontal"),
        partial(layers.RandomRotation, 0.06, **reflect),
        partial(layers.RandomZoom, (-0.2, 0.1), **reflect),
        partial(layers.RandomTranslation, 0.08, 0.08, **reflect),
        partial(layers.RandomBrightness, 0.15, value_range=(0, 255)),
        partial(layers.RandomContrast, 0.2),
    ]
    return keras.Sequential(
        [make(seed=seed + i) for i, make in enumerate(jitter)], name="augmentation"
    )


def build_head(
    n_features: int, n_classes: int, *, dropout: float, l2: float, hidden: int = 0
) -> Any:
    """Dropout + softmax, with one ReLU layer of ``hidden`` units before it when ``hidden > 0``."""
    import keras

    dense = partial(
        keras.layers.Dense, kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None
    )
    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs)
    if hidden > 0:
        x = dense(hidden, activation="relu", name="hidden")(x)
        x = keras.layers.Dropout(dropout, name="hidden_dropout")(x)
    outputs = dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="head")


def _fixed_dense(x: Any, units: int, weights: list[np.ndarray], name: str, **kw: Any) -> Any:
    import keras

    layer = keras.layers.Dense(units, trainable=False, name=name, **kw)
    y = layer(x)
    layer.set_weights(weights)
    return y


def mirror(x: Any, width: int) -> Any:
    """Left-right mirror as Permute + a fixed anti-diagonal Dense: a Transpose and a MatMul in
    ONNX, where a Lambda layer would not convert."""
    import keras

    y = keras.layers.Permute((1, 3, 2), name="mirror_to_columns")(x)  # (h, 3, w)
    flip = np.eye(width, dtype=np.float32)[::-1]
    y = _fixed_dense(y, width, [flip], "mirror_columns", use_bias=False)
    return keras.layers.Permute((1, 3, 2), name="mirror_back")(y)


def assemble(
    backbone: Any, head: Any, name: str, *, tta: bool = False, gate: FamiliarityGate | None = None
) -> Any:
    """Raw image in, class probabilities out. ``tta`` averages the image's and its mirror
    image's answers; ``gate`` (on the unmirrored features) moves unfamiliar images to Other."""
    import keras

    inputs = keras.Input(shape=backbone.input_shape[1:], name="image")
    features = backbone(inputs, training=False)
    outputs = head(features, training=False)
    if tta:
        mirrored = backbone(mirror(inputs, backbone.input_shape[2]), training=False)
        mirrored = head(mirrored, training=False)
        outputs = keras.layers.Average(name="mirror_average")([outputs, mirrored])
    if gate is not None:
        outputs = gate_layers(features, outputs, gate)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def gate_layers(features: Any, probs: Any, gate: FamiliarityGate) -> Any:
    """:meth:`FamiliarityGate.apply` as standard layers."""
    import keras

    layers = keras.layers
    k, n_classes = gate.prototypes.shape[0], probs.shape[-1]
    unit = layers.UnitNormalization(name="unit_features")(features)
    prototypes = [gate.prototypes.T.astype(np.float32)]
    similarity = _fixed_dense(unit, k, prototypes, "pet_similarity", use_bias=False)
    similarities = layers.Reshape((k, 1), name="similarities")(similarity)
    nearest = layers.GlobalMaxPooling1D(name="nearest_pet")(similarities)
    slope = np.full((1, 1), gate.slope, np.float32)
    step = [slope, np.full(1, -gate.slope * gate.threshold, np.float32)]
    familiar = _fixed_dense(nearest, 1, step, "familiar", activation="sigmoid")
    kernel, bias = np.zeros((1, n_classes), np.float32), np.zeros(n_classes, np.float32)
    kernel[0, gate.fallback], bias[gate.fallback] = -1.0, 1.0  # (1 - m) on the fallback class
    share = _fixed_dense(familiar, n_classes, [kernel, bias], "fallback_share")
    blended = layers.Multiply(name="familiar_share")([probs, familiar])
    return layers.Add(name="gated_probabilities")([blended, share])
