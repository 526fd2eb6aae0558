"""Calibration of the served probabilities, fitted on the calibration split, and the three
figures that say whether a confidence means something, measured on the test split.

The fit is a temperature for every answer and its own temperature for answers of the familiarity
gate's fallback class (see :mod:`kto.inference.calibration`), each the one of a grid that gives
the lowest cross-entropy on the calibration split against smoothed targets: ``(n + 1) / (n + 2)``
for the true class and the rest shared by the others, ``n`` the answers the temperature applies
to (Platt's targets, 1999). Plain log-likelihood on a split with no mistakes, which a head refitted
on that split always has, is lowest at the sharpest temperature tried, while ``n`` right answers
out of ``n`` only say that the error rate is about ``1 / (n + 2)``. The grid never goes below 1:
a confident mistake is the failure this calibration exists to prevent.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from kto.inference.calibration import Calibration
from pydantic import TypeAdapter

GRID = tuple(round(1.0 + 0.05 * k, 2) for k in range(61))
"""1.0 to 4.0: the temperatures tried."""
BINS = 10
CONFIDENT = 0.9
COVERAGE = 0.95


@dataclass(frozen=True)
class ConfidenceFigures:
    """On one split: ECE over ``BINS`` equal-width bins of the top probability; the mistakes made
    at a top probability >= ``CONFIDENT``, out of all mistakes; the accuracy on the ``COVERAGE``
    share of answers that are the most confident."""

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
        """From the record metrics.json keeps (validated; the derived keys are ignored)."""
        return TypeAdapter(cls).validate_python(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "confident_mistake_share": self.confident_share,
            "accuracy_at_coverage": round(self.covered_accuracy, 4),
        }


def smoothed_nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Cross-entropy against Platt's targets (module docstring)."""
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
    """The grid's temperatures with the lowest smoothed cross-entropy on the answers each one
    applies to."""
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
    """Markdown: one row per (label, figures)."""
    lines = [
        f"| | n | ECE ({BINS} bins) | mistakes at >= {CONFIDENT} | "
        f"accuracy at {COVERAGE:.0%} coverage |",
        "|---|---|---|---|---|",
    ]
    for label, f in rows:
        share = "no mistakes" if f.confident_share is None else f"{f.confident_share:.0%}"
        lines.append(
            f"| {label} | {f.n} | {f.ece:.4f} | {f.confident_mistakes}/{f.mistakes} ({share}) | "
            f"{f.covered_correct}/{f.covered} ({f.covered_accuracy:.2%}) |"
        )
    return "\n".join(lines)
