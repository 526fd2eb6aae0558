"""Calibrate a model folder's served probabilities from the wheel's own answers and store its
drift references; a calibration that would change any test answer is not written."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from kto.inference import Inference, ModelMetadata
from kto.inference.calibration import Calibration, DriftReference

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.reporting.confidence import (
    ConfidenceFigures,
    figures,
    figures_table,
    fit_calibration,
)
from cats_dogs_other.train.reporting.record import put_card_section, update_json

Rows = Sequence[tuple[Path, int]]  # (file, true class index)
BATCH = 32
CARD_HEADING = "## Confidence (calibrated)"


@dataclass(frozen=True)
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
            "test_before": self.test_before.to_dict(),
            "test_after": self.test_after.to_dict(),
            "calibration_split_after": self.calibration_after.to_dict(),
            "changed_answers": self.changed_answers,
        }

    def markdown(self) -> str:
        return card_section(self.to_dict())


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
        f"`docs/retraining.md`).\n\n"
        + figures_table([(label, ConfidenceFigures.from_dict(f)) for label, f in rows])
        + "\n"
    )


def raw_probs(inference: Inference, rows: Rows) -> np.ndarray:
    paths = [p for p, _ in rows]
    chunks = [
        inference.predict_arrays(np.stack([inference.preprocess(p) for p in paths[i : i + BATCH]]))
        for i in range(0, len(paths), BATCH)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(inference.classes)))


def answers(inference: Inference, meta: ModelMetadata, probs: np.ndarray) -> list[dict[str, Any]]:
    """What the wheel's ``to_result`` returns under ``meta``."""
    saved = inference.metadata
    inference.metadata = meta
    try:
        return [inference.to_result(row) for row in probs]
    finally:
        inference.metadata = saved


def gate_fallback(meta: ModelMetadata) -> str | None:
    gate = meta.extra.get("familiarity_gate")
    if isinstance(gate, dict) and gate.get("fallback") in meta.classes:
        return str(gate["fallback"])
    return None


def calibrate_model(model_dir: Path, calibration_rows: Rows, test_rows: Rows) -> CalibrationReport:
    if not calibration_rows or not test_rows:
        raise TrainingError("calibration needs photos in both the calibration and test splits")
    # float32: the calibration metadata.json shares is the f32 model's, whatever auto serves
    inference = Inference(model_dir, warmup=False, precision="f32")
    plain = dataclasses.replace(inference.metadata, calibration=None, drift_reference=None)
    classes = plain.classes
    cal_probs, test_probs = raw_probs(inference, calibration_rows), raw_probs(inference, test_rows)
    cal_labels = np.asarray([y for _, y in calibration_rows])
    test_labels = np.asarray([y for _, y in test_rows])
    fitted = fit_calibration(cal_probs, cal_labels, classes, gate_fallback(plain))
    calibrated = dataclasses.replace(plain, calibration=fitted)
    before, after = (
        answers(inference, plain, test_probs),
        answers(inference, calibrated, test_probs),
    )
    changed = sum(a["prediction"] != b["prediction"] for a, b in zip(before, after, strict=True))
    if changed:
        raise TrainingError(f"calibration would change {changed} test answers: not applied")
    served = np.asarray([a["values"] for a in after])
    cal_served = np.asarray([a["values"] for a in answers(inference, calibrated, cal_probs)])
    return CalibrationReport(
        calibration=fitted,
        drift=DriftReference.of(served, [a["prediction"] for a in after], classes, "test"),
        test_before=figures(np.asarray([a["values"] for a in before]), test_labels),
        test_after=figures(served, test_labels),
        calibration_after=figures(cal_served, cal_labels),
        changed_answers=changed,
    )


def write_report(model_dir: Path, report: CalibrationReport) -> None:
    """Into metadata.json (the two optional fields), metrics.json and the card."""
    model_dir = Path(model_dir)
    update_json(
        model_dir / "metadata.json",
        {
            "calibration": report.calibration.to_dict(),
            "drift_reference": report.drift.to_dict(),
        },
    )
    ModelMetadata.read(model_dir / "metadata.json")  # the wheel must accept what was written
    update_json(model_dir / "metrics.json", {"calibration": report.to_dict()})
    put_card_section(model_dir, report.markdown())
