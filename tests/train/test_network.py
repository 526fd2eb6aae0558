"""The network: the backbone and its weights, and the exported mirror pass (standard layers
that flip left-right and average)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cats_dogs_other.train.errors import WeightsError


def test_mirror_layers_flip_left_right_and_average() -> None:
    import keras

    from cats_dogs_other.train.network import assemble, build_head, mirror

    inputs = keras.Input(shape=(4, 5, 3))
    flipper = keras.Model(inputs, mirror(inputs, 5))
    image = np.random.default_rng(0).uniform(0, 255, (2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(flipper(image)), image[:, :, ::-1], atol=1e-4)
    pooled = keras.Sequential([keras.Input(shape=(4, 5, 3)), keras.layers.Flatten()])
    head = build_head(60, 3, dropout=0.0, l2=0.0)
    both = np.asarray(assemble(pooled, head, "m", tta=True)(image))
    plain = np.asarray(head(image.reshape(2, -1)))
    mirrored = np.asarray(head(image[:, :, ::-1].reshape(2, -1)))
    np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-5)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (None, "the mobilenet_v2 backbone needs --weights"),
        ("absent.weights.h5", "backbone weights not found: "),
        ("mobilenet.h5", "expected a Keras 3 '.weights.h5' file"),
        ("damaged.weights.h5", "cannot load backbone weights from "),
    ],
)
def test_unusable_backbone_weights_are_refused_with_the_fix(
    tmp_path: Path, weights: str | None, message: str
) -> None:
    from cats_dogs_other.train.network import build_backbone

    (tmp_path / "mobilenet.h5").write_bytes(b"an old Keras 2 file")
    (tmp_path / "damaged.weights.h5").write_bytes(b"not HDF5 at all")
    path = None if weights is None else tmp_path / weights
    with pytest.raises(WeightsError, match=re.escape(message)) as info:
        build_backbone("mobilenet_v2", (32, 32), path)
    assert weights is None or str(path) in str(info.value)


def test_an_unknown_backbone_names_the_known_ones() -> None:
    from cats_dogs_other.train.network import build_backbone

    with pytest.raises(ValueError, match="unknown backbone 'resnet'; choose one of mobilenet_v2"):
        build_backbone("resnet", (32, 32))  # type: ignore[arg-type]


def test_the_tiny_backbone_is_frozen_and_takes_raw_pixels() -> None:
    import keras

    from cats_dogs_other.train.network import build_backbone

    backbone = build_backbone("tiny", (32, 32))
    assert not backbone.trainable and backbone.trainable_weights == []
    assert backbone.input_shape == (None, 32, 32, 3) and backbone.output_shape == (None, 24)
    to_unit = keras.Model(backbone.input, backbone.get_layer("to_unit_range").output)
    pixels = np.asarray(to_unit(np.array([[[[0.0, 127.5, 255.0]] * 32] * 32], np.float32)))
    np.testing.assert_allclose(pixels[0, 0, 0], [-1.0, 0.0, 1.0], atol=1e-6)
