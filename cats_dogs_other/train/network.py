"""The network: backbone (raw pixels -> features), augmentation, head, and the exported model.

Preprocessing lives INSIDE the backbone (a Rescaling layer to [-1, 1], what MobileNetV2 expects),
so the exported model takes raw RGB 0..255 and ``metadata.json`` says ``{"mode": "none"}``: the
wheel only decodes and resizes, and training and serving cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cats_dogs_other.train.errors import WeightsError

if TYPE_CHECKING:
    from cats_dogs_other.train.familiarity import FamiliarityGate

Backbone = Literal["mobilenet_v2", "tiny"]
BACKBONES: tuple[Backbone, ...] = ("mobilenet_v2", "tiny")


def build_backbone(kind: Backbone, input_size: tuple[int, int], weights: Path | None = None) -> Any:
    """A frozen feature extractor taking raw 0..255 RGB of ``input_size``.

    ``tiny`` is two random convolutions (the first one's mean: the mean colour): it needs no
    weights file and exists so the whole pipeline can be tested in seconds, offline.
    """
    import keras

    inputs = keras.Input(shape=(*input_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
    if kind == "mobilenet_v2":
        base = keras.applications.MobileNetV2(
            include_top=False,
            weights=None,
            input_shape=(*input_size, 3),
            pooling="avg",
        )
        _load_weights(base, weights)
        x = base(x, training=False)
    elif kind == "tiny":
        # conv1 is linear, so its mean still carries the mean colour; everything from conv2 on
        # depends on conv1's output only: the block fine-tuning trains (see finetune.py)
        low = keras.layers.Conv2D(8, 3, strides=2, name="tiny_conv1")(x)
        conv = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="tiny_conv2")(low)
        x = keras.layers.Concatenate(name="tiny_features")(
            [
                keras.layers.GlobalAveragePooling2D(name="tiny_colour")(low),
                keras.layers.GlobalAveragePooling2D(name="tiny_pool")(conv),
            ]
        )
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
        raise WeightsError(
            f"backbone weights not found: {weights}\nPass --weights PATH to "
            "mobilenet_v2_1.0_224_no_top.weights.h5 (see ../shared/weights/README.md) or set "
            "CDO_SHARED_DIR."
        )
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

    layers = keras.layers
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.06, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.2, 0.1), fill_mode="reflect", seed=seed + 2),
            layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 3),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 4),
            layers.RandomContrast(0.2, seed=seed + 5),
        ],
        name="augmentation",
    )


def build_head(
    n_features: int, n_classes: int, *, dropout: float, l2: float, hidden: int = 0
) -> Any:
    """Dropout + softmax, with one ReLU layer of ``hidden`` units before it when ``hidden > 0``."""
    import keras

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs)
    if hidden > 0:
        x = keras.layers.Dense(hidden, activation="relu", kernel_regularizer=reg, name="hidden")(x)
        x = keras.layers.Dropout(dropout, name="hidden_dropout")(x)
    outputs = keras.layers.Dense(
        n_classes, activation="softmax", kernel_regularizer=reg, name="probabilities"
    )(x)
    return keras.Model(inputs, outputs, name="head")


def mirror(x: Any, width: int) -> Any:
    """Left-right mirror as standard layers (Permute + a fixed anti-diagonal Dense): a
    Transpose and a MatMul in ONNX/OpenVINO, where a custom or Lambda layer would not convert."""
    import keras

    flip = keras.layers.Dense(width, use_bias=False, trainable=False, name="mirror_columns")
    y = keras.layers.Permute((1, 3, 2), name="mirror_to_columns")(x)  # (h, 3, w)
    y = flip(y)
    flip.set_weights([np.eye(width, dtype=np.float32)[::-1]])
    return keras.layers.Permute((1, 3, 2), name="mirror_back")(y)


def assemble(
    backbone: Any, head: Any, name: str, *, tta: bool = False, gate: FamiliarityGate | None = None
) -> Any:
    """Raw image in, class probabilities out: the single model that is saved and served.

    ``tta`` averages the probabilities of the image and its mirror image (two backbone passes);
    ``gate`` (on the unmirrored image's features) moves unfamiliar images to the fallback class.
    """
    import keras

    inputs = keras.Input(shape=backbone.input_shape[1:], name="image")
    features = backbone(inputs, training=False)
    outputs = head(features, training=False)
    if tta:
        mirrored = mirror(inputs, backbone.input_shape[2])
        outputs_m = head(backbone(mirrored, training=False), training=False)
        outputs = keras.layers.Average(name="mirror_average")([outputs, outputs_m])
    if gate is not None:
        outputs = gate_layers(features, outputs, gate)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def gate_layers(features: Any, probs: Any, gate: FamiliarityGate) -> Any:
    """:class:`~cats_dogs_other.train.familiarity.FamiliarityGate` as standard Keras layers on the
    backbone's ``features`` and the head's ``probs``: UnitNormalization, a fixed Dense of the
    prototypes, a max, a fixed sigmoid step, and the blend towards the fallback class."""
    import keras

    layers = keras.layers
    k = gate.prototypes.shape[0]
    n_classes = probs.shape[-1]
    similarity = layers.Dense(k, use_bias=False, trainable=False, name="pet_similarity")
    nearest = layers.GlobalMaxPooling1D(name="nearest_pet")(
        layers.Reshape((k, 1), name="similarities")(
            similarity(layers.UnitNormalization(name="unit_features")(features))
        )
    )
    step = layers.Dense(1, activation="sigmoid", trainable=False, name="familiar")
    familiar = step(nearest)
    to_fallback = layers.Dense(n_classes, trainable=False, name="fallback_share")
    share = to_fallback(familiar)
    similarity.set_weights([gate.prototypes.T.astype(np.float32)])
    step.set_weights(
        [
            np.full((1, 1), gate.slope, np.float32),
            np.full(1, -gate.slope * gate.threshold, np.float32),
        ]
    )
    kernel = np.zeros((1, n_classes), np.float32)
    bias = np.zeros(n_classes, np.float32)
    kernel[0, gate.fallback], bias[gate.fallback] = -1.0, 1.0  # (1 - m) on the fallback class
    to_fallback.set_weights([kernel, bias])
    return layers.Add(name="gated_probabilities")(
        [layers.Multiply(name="familiar_share")([probs, familiar]), share]
    )
