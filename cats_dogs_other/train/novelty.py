"""Novelty gate: images unlike every training image are answered "Other".

The training set's "other" class is landscapes only, so a softmax head has never seen people,
food or vehicles and often calls them Cat or Dog with confidence: a confidence threshold
catches few of them. How close an image's backbone features are to the NEAREST training image
(cosine similarity, deep k-NN with k=1) separates them much better. The gate is built into the
exported Keras model from standard layers, so the wheel applies it without knowing about it:

    probs' = probs * (1 - g) + g * onehot(Other),   g = sigmoid(sharpness * (threshold - s))

where ``s`` is the similarity to the nearest reference image (training images, clean and
augmented). The threshold is calibrated on cross-validated in-distribution images (no accuracy
lost) and on half of the out-of-distribution set; the other half measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cats_dogs_other.train.features import FeatureBank

SHARPNESS = 200.0
"""Gate slope: g goes from 0.05 to 0.95 over +-0.015 of cosine similarity around the threshold."""


@dataclass(frozen=True)
class NoveltyGate:
    reference: np.ndarray
    """(n_ref, d) unit-length feature vectors of the training images."""
    threshold: float
    fallback: int
    sharpness: float = SHARPNESS


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def reference_features(bank: FeatureBank, idx: np.ndarray, passes: int) -> np.ndarray:
    """Clean + the first ``passes`` augmented copies of ``idx``, unit length."""
    parts = [bank.clean[idx], *(aug[idx] for aug in bank.augmented[:passes])]
    return unit(np.concatenate(parts))


def nearest_similarity(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each feature vector to its nearest reference vector."""
    if len(features) == 0:
        return np.zeros(0, np.float32)
    return (unit(features) @ reference.T).max(axis=1)


def gate_probs(
    probs: np.ndarray,
    similarity: np.ndarray,
    threshold: float | None,
    fallback: int,
    sharpness: float = SHARPNESS,
) -> np.ndarray:
    """NumPy mirror of the gate layers, used to calibrate before the model is built."""
    if threshold is None:
        return probs
    z = np.clip(sharpness * (threshold - similarity), -60.0, 60.0)
    g = 1.0 / (1.0 + np.exp(-z))
    out = probs * (1.0 - g)[:, None]
    out[:, fallback] += g
    return out


def attach_gate(features: Any, probs: Any, gate: NoveltyGate) -> Any:
    """The gate as standard Keras layers (no Lambda, no custom class: loads anywhere)."""
    import keras

    layers = keras.layers
    n_ref, dim = gate.reference.shape
    n_classes = probs.shape[-1]
    similarity = layers.Dense(n_ref, use_bias=False, trainable=False, name="novelty_similarity")
    nearest_pool = layers.GlobalMaxPooling1D(name="novelty_nearest")
    novelty = layers.Dense(1, activation="sigmoid", trainable=False, name="novelty")
    keep = layers.Dense(n_classes, trainable=False, name="novelty_keep")
    to_fallback = layers.Dense(n_classes, use_bias=False, trainable=False, name="novelty_to_other")

    sims = similarity(layers.UnitNormalization(axis=-1, name="novelty_unit")(features))
    nearest = nearest_pool(layers.Reshape((n_ref, 1), name="novelty_reshape")(sims))
    g = novelty(nearest)
    gated = layers.Add(name="gated_probabilities")(
        [layers.Multiply(name="novelty_scale")([probs, keep(g)]), to_fallback(g)]
    )
    similarity.set_weights([gate.reference.T.astype(np.float32)])
    novelty.set_weights(
        [
            np.array([[-gate.sharpness]], np.float32),
            np.array([gate.sharpness * gate.threshold], np.float32),
        ]
    )
    keep.set_weights([-np.ones((1, n_classes), np.float32), np.ones(n_classes, np.float32)])
    onehot = np.zeros((1, n_classes), np.float32)
    onehot[0, gate.fallback] = 1.0
    to_fallback.set_weights([onehot])
    assert dim == features.shape[-1]
    return gated
