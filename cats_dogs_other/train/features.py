"""Frozen-backbone features of an image as it is, mirrored, or augmented: computed once and cached
(feature_cache.py), they make a head's epoch a matrix product instead of a backbone pass."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from cats_dogs_other.train.network import build_augmenter

Extractor = Callable[[np.ndarray, str], np.ndarray]
"""(uint8 images, view) -> features; the view decides the mirroring or augmentation."""
_FORWARD: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def forward_fn(model: Any) -> Any:
    """A compiled inference call (no ``model.predict`` overhead), kept while the model lives so
    repeated scoring does not re-trace."""
    import tensorflow as tf

    if model not in _FORWARD:
        _FORWARD[model] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return _FORWARD[model]


def make_extractor(backbone: Any, seed: int) -> Extractor:
    """``clean`` as is, ``flip`` mirrored left-right, ``augK`` the K-th augmented copy."""
    forward = forward_fn(backbone)
    augmenters: dict[str, Any] = {}

    def extract(images: np.ndarray, view: str) -> np.ndarray:
        batch = images.astype(np.float32)
        if view == "flip":
            batch = batch[:, :, ::-1]
        elif view.startswith("aug"):
            if view not in augmenters:
                augmenters[view] = build_augmenter(seed + 100 * int(view[3:]))
            batch = np.asarray(augmenters[view](batch, training=True))
        elif view != "clean":
            raise ValueError(f"unknown feature view {view!r}")
        return np.asarray(forward(np.ascontiguousarray(batch)))

    return extract


def predict_batches(model: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's outputs (probabilities, or features for a backbone), batched, compiled."""
    forward = forward_fn(model)
    out = [
        np.asarray(forward(images[i : i + batch_size].astype(np.float32)))
        for i in range(0, len(images), batch_size)
    ]
    n_classes = model.output_shape[-1]
    return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)
