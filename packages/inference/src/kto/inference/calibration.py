"""Optional metadata a training run fits after the model is built: a calibration of the
probabilities the wheel returns, and drift references from held-out photos.

Both live in ``metadata.json`` and are bounded when loaded, like every other field. Without
them the wheel answers exactly as before.

Calibration is a temperature on the model's log-probabilities, ``q ∝ p ** (1 / T)``, with its
own temperature for answers whose top class is the familiarity gate's fallback (``Other``):
the gate is a layer inside the model file that forces the fallback with near-certainty, so its
answers need a softer, separate setting. A temperature never reorders a row's probabilities,
so the prediction (the argmax) cannot move; a ``min_confidence`` decision rule is applied to
the model's own probabilities, so it cannot move either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from kto.inference.drift import TOP_PROBABILITY_EDGES
from kto.inference.errors import ModelLoadError

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""A temperature outside these bounds is a mistake in the file, not a calibration."""
MAX_REFERENCE_COUNT = 10**9


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    fallback: str | None = None
    """The class whose answers use ``fallback_temperature`` (the gate's fallback)."""
    fallback_temperature: float = 1.0

    def apply(self, probs: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Calibrated rows of ``probs`` (n, classes); the argmax of every row is unchanged."""
        p = np.asarray(probs, dtype=np.float64)
        row = p.ndim == 1
        p = np.atleast_2d(p)
        t = np.full(len(p), self.temperature)
        if self.fallback is not None:
            t[p.argmax(axis=1) == classes.index(self.fallback)] = self.fallback_temperature
        logs = np.log(np.clip(p, 1e-12, 1.0)) / t[:, None]
        logs -= logs.max(axis=1, keepdims=True)
        q = np.exp(logs)
        q /= q.sum(axis=1, keepdims=True)
        return q[0] if row else q

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "fallback": self.fallback,
            "fallback_temperature": self.fallback_temperature,
        }


@dataclass(frozen=True)
class DriftReference:
    """What the model answered on held-out photos: answers per class and a histogram of the
    top probability, bucket ``k`` counting values in ``(edges[k-1], edges[k]]`` (the first
    bucket from 0), on the fixed :data:`~kto.inference.drift.TOP_PROBABILITY_EDGES`."""

    n: int
    prediction_counts: Mapping[str, int]
    top_probability_counts: tuple[int, ...]
    split: str = "test"

    @classmethod
    def of(
        cls, probs: np.ndarray, predictions: Sequence[str], classes: Sequence[str], split: str
    ) -> DriftReference:
        top = np.asarray(probs, dtype=np.float64).max(axis=1)
        buckets = np.searchsorted(np.asarray(TOP_PROBABILITY_EDGES), top, side="left")
        buckets = np.minimum(buckets, len(TOP_PROBABILITY_EDGES) - 1)
        counts = np.bincount(buckets, minlength=len(TOP_PROBABILITY_EDGES))
        return cls(
            n=len(top),
            prediction_counts={c: sum(1 for p in predictions if p == c) for c in classes},
            top_probability_counts=tuple(int(c) for c in counts),
            split=split,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "n": self.n,
            "prediction_counts": dict(self.prediction_counts),
            "top_probability_edges": list(TOP_PROBABILITY_EDGES),
            "top_probability_counts": list(self.top_probability_counts),
        }


def parse_calibration(value: Any, classes: tuple[str, ...], source: str) -> Calibration | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ModelLoadError(f"{source}: 'calibration' must be null or an object")
    fallback = value.get("fallback")
    if fallback is not None and fallback not in classes:
        raise ModelLoadError(f"{source}: calibration.fallback {fallback!r} is not one of {classes}")
    return Calibration(
        temperature=_temperature(value.get("temperature", 1.0), "temperature", source),
        fallback=fallback,
        fallback_temperature=_temperature(
            value.get("fallback_temperature", 1.0), "fallback_temperature", source
        ),
    )


def parse_drift_reference(
    value: Any, classes: tuple[str, ...], source: str
) -> DriftReference | None:
    if value is None:
        return None
    where = f"{source}: drift_reference"
    if not isinstance(value, Mapping):
        raise ModelLoadError(f"{where} must be null or an object")
    if value.get("top_probability_edges") != list(TOP_PROBABILITY_EDGES):
        raise ModelLoadError(
            f"{where}.top_probability_edges must be the wheel's TOP_PROBABILITY_EDGES "
            f"{list(TOP_PROBABILITY_EDGES)}"
        )
    n = _count(value.get("n"), f"{where}.n")
    answers = value.get("prediction_counts")
    if not isinstance(answers, Mapping) or set(answers) != set(classes):
        raise ModelLoadError(f"{where}.prediction_counts must give a count for each of {classes}")
    histogram = value.get("top_probability_counts")
    if not isinstance(histogram, Sequence) or len(histogram) != len(TOP_PROBABILITY_EDGES):
        raise ModelLoadError(
            f"{where}.top_probability_counts must have {len(TOP_PROBABILITY_EDGES)} counts"
        )
    counts = {c: _count(answers[c], f"{where}.prediction_counts") for c in classes}
    buckets = tuple(_count(b, f"{where}.top_probability_counts") for b in histogram)
    if sum(counts.values()) != n or sum(buckets) != n:
        raise ModelLoadError(f"{where}: the counts must each add up to n = {n}")
    split = value.get("split", "test")
    if not isinstance(split, str) or not 0 < len(split) <= 64:
        raise ModelLoadError(f"{where}.split must be a short name")
    return DriftReference(n, counts, buckets, split)


def _temperature(value: Any, what: str, source: str) -> float:
    low, high = TEMPERATURE_BOUNDS
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelLoadError(f"{source}: calibration.{what} must be a finite number")
    if not low <= value <= high:
        raise ModelLoadError(f"{source}: calibration.{what} must be between {low} and {high}")
    return float(value)


def _count(value: Any, where: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= MAX_REFERENCE_COUNT
    ):
        raise ModelLoadError(f"{where} must be whole numbers from 0 to {MAX_REFERENCE_COUNT}")
    return value
