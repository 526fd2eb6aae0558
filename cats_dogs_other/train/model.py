"""The network: backbone (raw pixels -> features), augmentation, head, and the exported model.

Preprocessing lives INSIDE the backbone (a Rescaling layer to [-1, 1], what MobileNetV2 expects),
so the exported model takes raw RGB 0..255 and ``metadata.json`` says ``{"mode": "none"}``: the
wheel only decodes and resizes, and training and serving cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from cats_dogs_other.train.errors import WeightsError

Backbone = Literal["mobilenet_v2", "tiny"]
BACKBONES: tuple[Backbone, ...] = ("mobilenet_v2", "tiny")


def build_backbone(kind: Backbone, input_size: tuple[int, int], weights: Path | None = None) -> Any:
    """A frozen feature extractor taking raw 0..255 RGB of ``input_size``.

    ``tiny`` is two random convolutions plus the mean colour: it needs no weights file and
    exists so the whole pipeline can be tested in seconds, offline.
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
        conv = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="tiny_conv1")(x)
        conv = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="tiny_conv2")(conv)
        x = keras.layers.Concatenate(name="tiny_features")(
            [
                keras.layers.GlobalAveragePooling2D(name="tiny_colour")(x),
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


def build_head(n_features: int, n_classes: int, *, dropout: float, l2: float) -> Any:
    """Dropout + one softmax layer: 192 images do not support more parameters than that."""
    import keras

    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs)
    outputs = keras.layers.Dense(
        n_classes,
        activation="softmax",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None,
        name="probabilities",
    )(x)
    return keras.Model(inputs, outputs, name="head")


def assemble(backbone: Any, head: Any, name: str, gate: Any = None) -> Any:
    """Raw image in, class probabilities out: the single model that is saved and served.

    ``gate`` (a :class:`~cats_dogs_other.train.novelty.NoveltyGate`) sends images unlike every
    training image to "Other", inside the model.
    """
    import keras

    inputs = keras.Input(shape=backbone.input_shape[1:], name="image")
    features = backbone(inputs, training=False)
    outputs = head(features, training=False)
    if gate is not None:
        from cats_dogs_other.train.novelty import attach_gate

        outputs = attach_gate(features, outputs, gate)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def unfreeze_top(backbone: Any, n_layers: int) -> int:
    """Make the top ``n_layers`` weight-carrying layers trainable; BatchNorm stays frozen.

    Frozen BatchNorm keeps its ImageNet statistics: re-estimating them from a few dozen images
    per batch would wreck the features. Returns how many layers were unfrozen.
    """
    import keras

    inner = [layer for layer in backbone.layers if isinstance(layer, keras.Model)]
    layers = inner[0].layers if inner else backbone.layers
    candidates = [
        layer
        for layer in layers
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    chosen = candidates[-n_layers:] if n_layers > 0 else []
    backbone.trainable = True
    for model in [backbone, *inner]:
        for layer in model.layers:
            if not isinstance(layer, keras.Model):
                layer.trainable = False
    for layer in chosen:
        layer.trainable = True
    return len(chosen)
