"""Temperatures fitted against Platt's smoothed targets (plain likelihood on a split with no
mistakes picks the sharpest temperature) and the confidence figures; docs/retraining.md."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from kto.inference.calibration import Calibration
from pydantic import TypeAdapter

from cats_dogs_other.train.reporting.record import markdown_table

GRID = tuple(round(1.0 + 0.05 * k, 2) for k in range(61))  # never below 1: never sharper
BINS = 10
CONFIDENT = 0.9
COVERAGE = 0.95


@dataclass(frozen=True)
class ConfidenceFigures:
    n: int
    ece: float
    mistakes: int
    confident_mistakes: int
    covered: int
    covered_correct: int

    @property
    def confident_share(self) -> float | None:
        return self.confident_mistakes / self.mistakes if self.mistakes else None

    @property
    def covered_accuracy(self) -> float:
        return self.covered_correct / self.covered if self.covered else 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfidenceFigures:
        return TypeAdapter(cls).validate_python(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "confident_mistake_share": self.confident_share,
            "accuracy_at_coverage": round(self.covered_accuracy, 4),
        }


def smoothed_nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Cross-entropy against (n + 1) / (n + 2) for the true class, the rest shared."""
    n, k = probs.shape
    if not n:
        return 0.0
    eps = 1.0 / (n + 2)
    targets = np.full((n, k), eps / (k - 1))
    targets[np.arange(n), labels] = 1.0 - eps
    return float(-np.mean(np.sum(targets * np.log(np.clip(probs, 1e-12, 1.0)), axis=1)))


def fit_calibration(
    probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], fallback: str | None
) -> Calibration:
    top = np.asarray(probs).argmax(axis=1)
    gated = top == classes.index(fallback) if fallback is not None else np.zeros(len(top), bool)

    def best(rows: np.ndarray) -> float:
        if not rows.any():
            return 1.0
        scored = [
            (smoothed_nll(Calibration(t).apply(probs[rows], classes), labels[rows]), t)
            for t in GRID
        ]
        return min(scored)[1]

    return Calibration(best(~gated), fallback, best(gated))


def figures(probs: np.ndarray, labels: np.ndarray) -> ConfidenceFigures:
    probs = np.asarray(probs, dtype=np.float64)
    top, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    bins = np.minimum((top * BINS).astype(int), BINS - 1)
    ece = sum(
        abs(float(np.mean(right[bins == b])) - float(np.mean(top[bins == b]))) * np.mean(bins == b)
        for b in range(BINS)
        if np.any(bins == b)
    )
    covered = math.ceil(COVERAGE * len(top))
    order = np.argsort(-top, kind="stable")[:covered]
    return ConfidenceFigures(
        n=len(labels),
        ece=round(float(ece), 4),
        mistakes=int(np.sum(~right)),
        confident_mistakes=int(np.sum(~right & (top >= CONFIDENT))),
        covered=covered,
        covered_correct=int(np.sum(right[order])),
    )


def figures_table(rows: list[tuple[str, ConfidenceFigures]]) -> str:
    header = ("", "n", f"ECE ({BINS} bins)", f"mistakes at >= {CONFIDENT}")
    return markdown_table(
        (*header, f"accuracy at {COVERAGE:.0%} coverage"),
        ([label, f.n, f"{f.ece:.4f}", _mistakes(f), _covered(f)] for label, f in rows),
    )


def _mistakes(f: ConfidenceFigures) -> str:
    share = "no mistakes" if f.confident_share is None else f"{f.confident_share:.0%}"
    return f"{f.confident_mistakes}/{f.mistakes} ({share})"


def _covered(f: ConfidenceFigures) -> str:
    return f"{f.covered_correct}/{f.covered} ({f.covered_accuracy:.2%})"
