"""Calibrate a model folder's served probabilities from the wheel's own answers and store its
drift references; a calibration that would change any test answer is not written. Temperatures
are fitted against Platt's smoothed targets (plain likelihood on a split with no mistakes picks
the sharpest temperature); docs/retraining.md."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kto.inference import Inference, ModelMetadata
from kto.inference.calibration import Calibration, DriftReference
from pydantic import BaseModel

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.reporting.record import markdown_table, put_card_section, update_json

Rows = Sequence[tuple[Path, int]]  # (file, true class index)
BATCH = 32
CARD_HEADING = "## Confidence (calibrated)"
GRID = tuple(round(1.0 + 0.05 * k, 2) for k in range(61))  # never below 1: never sharper
BINS = 10
CONFIDENT = 0.9
COVERAGE = 0.95


class ConfidenceFigures(BaseModel, frozen=True):
    n: int
    ece: float
    mistakes: int
    confident_mistakes: int
    covered: int
    covered_correct: int
    confident_mistake_share: float | None = None  # derived: the table recomputes both
    accuracy_at_coverage: float = 0.0


@dataclasses.dataclass(frozen=True)
class CalibrationReport:
    calibration: Calibration
    drift: DriftReference
    test_before: ConfidenceFigures
    test_after: ConfidenceFigures
    calibration_after: ConfidenceFigures
    changed_answers: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "fitted_on": f"calibration split (n={self.calibration_after.n})",
            "calibration": self.calibration.to_dict(),
            "test_before": self.test_before.model_dump(),
            "test_after": self.test_after.model_dump(),
            "calibration_split_after": self.calibration_after.model_dump(),
            "changed_answers": self.changed_answers,
        }

    def markdown(self) -> str:
        return card_section(self.to_dict())


def figures_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    header = ("", "n", f"ECE ({BINS} bins)", f"mistakes at >= {CONFIDENT}")
    cells = []
    for label, record in rows:
        f = ConfidenceFigures.model_validate(record)
        share = f.confident_mistakes / f.mistakes if f.mistakes else None
        share_text = "no mistakes" if share is None else f"{share:.0%}"
        accuracy = f.covered_correct / f.covered if f.covered else 0.0
        mistakes = f"{f.confident_mistakes}/{f.mistakes} ({share_text})"
        covered = f"{f.covered_correct}/{f.covered} ({accuracy:.2%})"
        cells.append([label, f.n, f"{f.ece:.4f}", mistakes, covered])
    return markdown_table((*header, f"accuracy at {COVERAGE:.0%} coverage"), cells)


def card_section(record: dict[str, Any]) -> str:
    c = record["calibration"]
    gate = (
        f" and {c['fallback_temperature']} for answers of {c['fallback']}" if c["fallback"] else ""
    )
    rows = [
        ("test, as the model outputs", record["test_before"]),
        ("test, calibrated (served)", record["test_after"]),
        ("calibration split, calibrated", record["calibration_split_after"]),
    ]
    return (
        f"{CARD_HEADING}\n\nTemperature {c['temperature']}{gate}, fitted on the "
        f"{record['fitted_on']}; {record['changed_answers']} of {record['test_after']['n']} test "
        "predictions changed; drift references in metadata.json `drift_reference` (method: "
        f"`docs/retraining.md`).\n\n{figures_table(rows)}\n"
    )


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
    correct = int(np.sum(right[np.argsort(-top, kind="stable")[:covered]]))
    mistakes, confident = int(np.sum(~right)), int(np.sum(~right & (top >= CONFIDENT)))
    return ConfidenceFigures(
        n=len(labels),
        ece=round(float(ece), 4),
        mistakes=mistakes,
        confident_mistakes=confident,
        covered=covered,
        covered_correct=correct,
        confident_mistake_share=confident / mistakes if mistakes else None,
        accuracy_at_coverage=round(correct / covered, 4) if covered else 0.0,
    )


def raw_probs(inference: Inference, paths: Sequence[Path]) -> np.ndarray:
    """The model's own probabilities of each file, in batches of ``BATCH``."""
    chunks = [
        inference.predict_arrays(np.stack([inference.preprocess(p) for p in paths[i : i + BATCH]]))
        for i in range(0, len(paths), BATCH)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(inference.classes)))


def answers(
    inference: Inference, probs: np.ndarray, meta: ModelMetadata
) -> tuple[np.ndarray, list[str]]:
    """The values and predictions the wheel's ``to_result`` gives under ``meta``."""
    saved = inference.metadata
    inference.metadata = meta
    try:
        results = [inference.to_result(row) for row in probs]
    finally:
        inference.metadata = saved
    return np.asarray([r["values"] for r in results]), [r["prediction"] for r in results]


def calibrate_model(
    model_dir: Path, calibration_rows: Rows, test_rows: Rows, *, write: bool = False
) -> CalibrationReport:
    """The report; with ``write``, stored into metadata.json, metrics.json and the card."""
    if not calibration_rows or not test_rows:
        raise TrainingError("calibration needs photos in both the calibration and test splits")
    # float32: the calibration metadata.json shares is the f32 model's, whatever auto serves
    inference = Inference(model_dir, warmup=False, precision="f32")
    plain = dataclasses.replace(inference.metadata, calibration=None, drift_reference=None)
    cal_probs, test_probs = (
        raw_probs(inference, [p for p, _ in r]) for r in (calibration_rows, test_rows)
    )
    cal_labels, test_labels = (np.asarray([y for _, y in r]) for r in (calibration_rows, test_rows))
    gate = plain.extra.get("familiarity_gate")
    fallback = gate.get("fallback") if isinstance(gate, dict) else None
    fitted = fit_calibration(
        cal_probs, cal_labels, plain.classes, fallback if fallback in plain.classes else None
    )
    calibrated = dataclasses.replace(plain, calibration=fitted)
    before, after = (
        answers(inference, test_probs, plain),
        answers(inference, test_probs, calibrated),
    )
    changed = sum(a != b for a, b in zip(before[1], after[1], strict=True))
    if changed:
        raise TrainingError(f"calibration would change {changed} test answers: not applied")
    report = CalibrationReport(
        calibration=fitted,
        drift=DriftReference.of(after[0], after[1], plain.classes, "test"),
        test_before=figures(before[0], test_labels),
        test_after=figures(after[0], test_labels),
        calibration_after=figures(answers(inference, cal_probs, calibrated)[0], cal_labels),
        changed_answers=changed,
    )
    if write:
        _write_report(model_dir, report)
    return report


def _write_report(model_dir: Path, report: CalibrationReport) -> None:
    values = {
        "calibration": report.calibration.to_dict(),
        "drift_reference": report.drift.to_dict(),
    }
    update_json(Path(model_dir) / "metadata.json", values)
    ModelMetadata.read(Path(model_dir) / "metadata.json")  # the wheel must accept what was written
    update_json(Path(model_dir) / "metrics.json", {"calibration": report.to_dict()})
    put_card_section(model_dir, report.markdown())
