"""The calibration a run fits (on the calibration split) and the figures it reports (on the
test split), and what it stores for the wheel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kto.inference import Inference, ModelMetadata

from cats_dogs_other.train.cli import main
from cats_dogs_other.train.reporting.calibrate import figures, fit_calibration

from .conftest import PipelineRun

CLASSES = ("Cat", "Dog", "Other")


def test_figures_count_what_they_say() -> None:
    probs = np.array([[0.95, 0.03, 0.02]] * 18 + [[0.05, 0.92, 0.03], [0.5, 0.3, 0.2]])
    labels = np.array([0] * 18 + [0, 1])
    f = figures(probs, labels)
    assert (f.n, f.mistakes, f.confident_mistakes) == (20, 2, 1)
    assert f.confident_mistake_share == 0.5
    assert (f.covered, f.covered_correct) == (19, 18)  # 95% of 20: the least sure one left out
    # bin (0.9, 1]: 19 answers at ~0.95, 18 right; bin (0.5]: one wrong at 0.5
    expected = 19 / 20 * abs(18 / 19 - (18 * 0.95 + 0.92) / 19) + 1 / 20 * 0.5
    assert f.ece == pytest.approx(expected, abs=1e-4)


def test_fit_softens_confident_mistakes_and_never_moves_an_answer() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    probs = np.full((300, 3), 0.01)
    answered = np.where(rng.random(300) < 0.8, labels, (labels + 1) % 3)  # 80% right...
    probs[np.arange(300), answered] = 0.98  # ...each at 0.98
    cal = fit_calibration(probs, labels, CLASSES, "Other")
    assert cal.temperature > 1 and cal.fallback_temperature > 1
    calibrated = cal.apply(probs, CLASSES)
    assert np.array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))
    assert figures(calibrated, labels).ece < figures(probs, labels).ece
    perfect = fit_calibration(np.eye(3)[labels] * 0.97 + 0.01, labels, CLASSES, "Other")
    assert perfect.temperature >= 1 and perfect.fallback_temperature >= 1


def test_a_run_stores_its_calibration_and_drift_references(trained: Path) -> None:
    meta = ModelMetadata.read(trained / "metadata.json")
    gate = meta.extra.get("familiarity_gate")  # the fallback's own temperature: with a gate only
    assert meta.calibration is not None
    assert meta.calibration.fallback == (gate["fallback"] if gate else None)
    test_n = len(json.loads((trained / "metrics.json").read_text())["split"]["test_files"])
    assert meta.drift_reference is not None and meta.drift_reference.n == test_n
    record = json.loads((trained / "metrics.json").read_text())["calibration"]
    assert record["changed_answers"] == 0 and record["test_after"]["n"] == test_n
    assert "## Confidence (calibrated)" in (trained / "MODEL_CARD.md").read_text()
    assert Inference(trained, warmup=False).metadata.calibration == meta.calibration


def test_calibrate_rebuilds_the_splits_of_a_run(
    pipeline_run: PipelineRun, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (pipeline_run.out / "metadata.json").read_text()
    argv = ["calibrate", "--model", str(pipeline_run.out), "--dry-run"]
    assert main([*argv, *(a for s in pipeline_run.sources for a in ("--data", str(s)))]) == 0
    assert "ECE (10 bins)" in capsys.readouterr().out
    assert (pipeline_run.out / "metadata.json").read_text() == before
    assert main([*argv, "--data", str(pipeline_run.sources[0])]) == 2  # not the run's sources
