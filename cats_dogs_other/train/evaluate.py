"""Metrics as a person reads them: accuracy, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cats_dogs_other.train.features import forward_fn
from cats_dogs_other.train.stats import proportion

if TYPE_CHECKING:
    from cats_dogs_other.train.sources import Pool


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


def section(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """:func:`classification_metrics` plus accuracy, recall and precision as proportions with
    their n and 95% Wilson interval."""
    base = classification_metrics(y_true, y_pred, classes)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    base["accuracy"] = proportion(int(np.sum(y_true == y_pred)), len(y_true))
    for i, name in enumerate(classes):
        hit = int(np.sum((y_true == i) & (y_pred == i)))
        base["per_class"][name]["recall_ci"] = proportion(hit, int(np.sum(y_true == i)))
        base["per_class"][name]["precision_ci"] = proportion(hit, int(np.sum(y_pred == i)))
    return base


def held_out_report(pool: Pool, idx: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Figures for held-out images ``idx`` answered ``pred``: all, per source, and the share of
    held-out ImageNet "Other" classes answered Other, by kind."""
    classes = pool.classes
    y, sources = pool.labels[idx], pool.sources[idx]
    fallback = classes.index("Other") if "Other" in classes else len(classes) - 1
    kinds = np.asarray([pool.kinds[i] or "" for i in idx])
    other = (y == fallback) & (kinds != "")
    by_kind = {
        kind: proportion(
            int(np.sum(pred[other & (kinds == kind)] == fallback)),
            int(np.sum(other & (kinds == kind))),
        )
        for kind in sorted(set(kinds[other]))
    }
    return {
        "all": section(y, pred, classes),
        "per_source": {
            name: section(y[sources == name], pred[sources == name], classes)
            for name in pool.source_names
            if np.any(sources == name)
        },
        "other_by_kind": by_kind,
        "other_held_out_classes": proportion(
            int(np.sum(pred[other] == fallback)), int(other.sum())
        ),
    }
