"""The decision rule and its calibration: ``min_confidence`` (an unsure answer becomes the
fallback class) chosen on the calibration split by macro recall."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np

from cats_dogs_other.train.results import ConfidenceRule

FIXED_CANDIDATES = (0.5, 0.6, 0.7, 0.8, 0.9)
Rule = TypeVar("Rule", bound=ConfidenceRule)
Score = Callable[[float | None], float]


def decide(probs: np.ndarray, threshold: float | None, fallback: int) -> np.ndarray:
    """``min_confidence``, exactly as the wheel applies it."""
    pred = np.argmax(probs, axis=1)
    return pred if threshold is None else np.where(probs.max(axis=1) < threshold, fallback, pred)


def macro_recall(y_true: np.ndarray, y_pred: np.ndarray, strata: np.ndarray | None = None) -> float:
    """Mean recall over classes (or strata): a small class weighs as much as a large one, so a
    choice cannot trade Other for pet photos unnoticed. Choices use classes: in a 6-photo
    stratum one image is worth several points."""
    keys = y_true.astype(str)
    if strata is not None:
        keys = np.char.add(strata.astype(str), keys)
    recalls = [float(np.mean(y_pred[keys == k] == y_true[keys == k])) for k in np.unique(keys)]
    return float(np.mean(recalls)) if recalls else 0.0


def sweep(
    kind: type[Rule], score: Score, candidates: Iterable[float], min_gain: float | None, **kw: Any
) -> tuple[float | None, Rule]:
    """The threshold of best score, the lowest of equals, kept when it beats none
    (``score(None)``) by ``min_gain`` (``None``: by anything)."""
    base = score(None)
    top, t = max(((score(t), t) for t in candidates), key=lambda st: (st[0], -st[1]))
    kept = top > base if min_gain is None else top >= base + min_gain
    chosen = round(t, 4) if kept else None
    return chosen, kind(
        macro_recall_without=round(base, 4),
        best_threshold=round(t, 4),
        macro_recall_with_best=round(top, 4),
        chosen=chosen,
        **kw,
    )


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, strata: np.ndarray | None, fallback: int, min_gain: float
) -> tuple[float | None, ConfidenceRule]:
    """The best ``min_confidence``, kept only when it beats no threshold by ``min_gain``."""
    top = np.unique(np.round(probs.max(axis=1), 4))
    candidates = np.unique(np.concatenate([(top[:-1] + top[1:]) / 2, FIXED_CANDIDATES]))

    def score(t: float | None) -> float:
        return macro_recall(labels, decide(probs, t, fallback), strata)

    return sweep(ConfidenceRule, score, map(float, candidates), min_gain, n=len(labels))
