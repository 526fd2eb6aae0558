"""The exported network's mirror pass: standard layers that flip left-right and average."""

from __future__ import annotations

import numpy as np


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
