"""The decision rule and its calibration: ``min_confidence`` (an unsure answer becomes the
fallback class) chosen on the calibration split by macro recall."""

from __future__ import annotations

import numpy as np

from cats_dogs_other.train.results import ConfidenceRule

FIXED_CANDIDATES = (0.5, 0.6, 0.7, 0.8, 0.9)


def decide(probs: np.ndarray, threshold: float | None, fallback: int) -> np.ndarray:
    """``min_confidence``, exactly as the wheel applies it."""
    pred = np.argmax(probs, axis=1)
    return pred if threshold is None else np.where(probs.max(axis=1) < threshold, fallback, pred)


def macro_recall(y_true: np.ndarray, y_pred: np.ndarray, strata: np.ndarray | None = None) -> float:
    """Mean recall over classes (or strata): a small class weighs as much as a large one, so a
    choice cannot trade Other for pet photos unnoticed. Choices use classes: in a 6-photo
    stratum one image is worth several points."""
    keys = (
        y_true.astype(str)
        if strata is None
        else np.char.add(strata.astype(str), y_true.astype(str))
    )
    recalls = [float(np.mean(y_pred[keys == k] == y_true[keys == k])) for k in np.unique(keys)]
    return float(np.mean(recalls)) if recalls else 0.0


def choose_threshold(
    probs: np.ndarray,
    labels: np.ndarray,
    strata: np.ndarray | None,
    fallback: int,
    min_gain: float,
) -> tuple[float | None, ConfidenceRule]:
    """The best ``min_confidence``, kept only when it beats no threshold by ``min_gain``."""
    base = macro_recall(labels, decide(probs, None, fallback), strata)
    top = np.unique(np.round(probs.max(axis=1), 4))
    candidates = np.unique(np.concatenate([(top[:-1] + top[1:]) / 2, FIXED_CANDIDATES]))
    scored = [
        (macro_recall(labels, decide(probs, float(t), fallback), strata), float(t))
        for t in candidates
    ]
    best_score, best_t = max(scored, key=lambda st: (st[0], -st[1])) if scored else (base, None)
    chosen = round(best_t, 4) if best_t is not None and best_score >= base + min_gain else None
    return chosen, ConfidenceRule(
        macro_recall_without=round(base, 4),
        best_threshold=None if best_t is None else round(best_t, 4),
        macro_recall_with_best=round(best_score, 4),
        chosen=chosen,
        n=len(labels),
    )
