"""Metrics as a person reads them: accuracy, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cats_dogs_other.train.features import forward_fn


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "accuracy": round(float(np.mean(np.asarray(y_true) == np.asarray(y_pred))), 4)
        if len(y_true)
        else None,
        "n": len(y_true),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": list(classes),
            "rows": "true class",
            "columns": "predicted class",
            "matrix": matrix.tolist(),
        },
    }


def predict_batches(model: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's outputs (probabilities, or features for a backbone), batched, compiled."""
    forward = forward_fn(model)
    out = [
        np.asarray(forward(images[i : i + batch_size].astype(np.float32)))
        for i in range(0, len(images), batch_size)
    ]
    n_classes = model.output_shape[-1]
    return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)


def apply_decision(probs: np.ndarray, threshold: float | None, fallback: int) -> np.ndarray:
    """``min_confidence``: below ``threshold`` the answer is ``fallback`` (as the wheel does)."""
    pred = np.argmax(probs, axis=1)
    if threshold is None:
        return pred
    return np.where(probs.max(axis=1) < threshold, fallback, pred)


def time_forward(forward: Any, input_size: tuple[int, int], repeats: int = 5) -> dict[str, float]:
    """Median milliseconds per image: one image alone, and in a batch of 32."""
    figures = {}
    for label, n in (("ms_single_image", 1), ("ms_per_image_batch32", 32)):
        batch = np.random.default_rng(0).uniform(0, 255, (n, *input_size, 3)).astype(np.float32)
        forward(batch)  # trace and warm up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward(batch)
            times.append((time.perf_counter() - start) * 1000 / n)
        figures[label] = round(float(np.median(times)), 2)
    return figures
