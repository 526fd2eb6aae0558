"""Optional calibration and drift references in metadata.json: bounded when loaded, applied
by ``to_result`` without moving any answer, absent = the model's own probabilities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kto.inference import Inference, ModelLoadError, ModelMetadata
from kto.inference.calibration import Calibration, DriftReference
from kto.inference.drift import TOP_PROBABILITY_EDGES

from cats_dogs_other.testing.tiny_model import save_tiny_model, solid_colour_png

CLASSES = ("Cat", "Dog", "Other")
BASE: dict[str, Any] = {"classes": list(CLASSES), "preprocessing": {"mode": "none"}}
CALIBRATION = {"temperature": 1.5, "fallback": "Other", "fallback_temperature": 3.0}


def _reference(n: int = 4) -> dict[str, Any]:
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.34, 0.33, 0.33], [0, 0, 1.0]])[:n]
    preds = [CLASSES[i] for i in probs.argmax(axis=1)]
    return DriftReference.of(probs, preds, CLASSES, "test").to_dict()


def test_absent_fields_are_todays_behaviour():
    meta = ModelMetadata.from_dict(BASE)
    assert meta.calibration is None and meta.drift_reference is None
    assert "calibration" not in meta.to_dict() and "drift_reference" not in meta.to_dict()


def test_fields_round_trip(tmp_path: Path):
    meta = ModelMetadata.from_dict(
        {**BASE, "calibration": CALIBRATION, "drift_reference": _reference()}
    )
    assert meta.calibration == Calibration(1.5, "Other", 3.0)
    assert meta.drift_reference is not None and meta.drift_reference.n == 4
    assert ModelMetadata.read(meta.write(tmp_path)).to_dict() == meta.to_dict()


def test_histogram_uses_the_fixed_edges():
    ref = _reference()
    assert ref["top_probability_edges"] == list(TOP_PROBABILITY_EDGES)
    # 0.34 -> first bucket (<= 0.4), 0.7 -> (0.6, 0.7], 0.9 -> (0.8, 0.9], 1.0 -> last bucket
    assert ref["top_probability_counts"][0] == 1
    assert ref["top_probability_counts"][TOP_PROBABILITY_EDGES.index(0.7)] == 1
    assert ref["top_probability_counts"][TOP_PROBABILITY_EDGES.index(0.9)] == 1
    assert ref["top_probability_counts"][-1] == 1
    assert ref["prediction_counts"] == {"Cat": 2, "Dog": 1, "Other": 1}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("calibration", {"temperature": 0.0}, "between"),
        ("calibration", {"temperature": 1e9}, "between"),
        ("calibration", {"temperature": float("nan")}, "finite"),
        ("calibration", {"fallback_temperature": True}, "finite"),
        ("calibration", {"fallback": "Bird"}, "not one of"),
        ("calibration", [1.5], "object"),
        ("drift_reference", {**_reference(), "top_probability_edges": [0.5, 1.0]}, "EDGES"),
        ("drift_reference", {**_reference(), "n": 5}, "add up"),
        ("drift_reference", {**_reference(), "n": -1}, "whole numbers"),
        ("drift_reference", {**_reference(), "top_probability_counts": [1]}, "counts"),
        ("drift_reference", {**_reference(), "prediction_counts": {"Cat": 4}}, "each of"),
        ("drift_reference", {**_reference(), "split": "x" * 100}, "short name"),
    ],
)
def test_bad_values_are_refused_naming_the_field(field: str, value: Any, message: str):
    with pytest.raises(ModelLoadError, match=message):
        ModelMetadata.from_dict({**BASE, field: value})


def test_apply_never_moves_the_argmax():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([0.3, 0.3, 0.3], size=2000)
    for cal in (Calibration(0.05, "Other", 20.0), Calibration(20.0, "Other", 0.05)):
        calibrated = cal.apply(probs, CLASSES)
        assert np.array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))
        assert np.allclose(calibrated.sum(axis=1), 1.0)
    soft = Calibration(2.0, "Other", 4.0).apply(np.array([0.02, 0.01, 0.97]), CLASSES)
    softer_pet = Calibration(2.0, "Other", 4.0).apply(np.array([0.97, 0.02, 0.01]), CLASSES)
    assert soft[2] < softer_pet[0] < 0.97  # the fallback's answers get their own temperature


def test_the_wheel_serves_calibrated_values_and_the_same_answers(tmp_path: Path):
    model = save_tiny_model(tmp_path / "plain")
    plain = Inference(model)
    meta_path = model.parent / "metadata.json"
    doc = json.loads(meta_path.read_text())
    doc["calibration"] = CALIBRATION
    doc["decision"] = {"rule": "min_confidence", "threshold": 0.9, "fallback": "Other"}
    meta_path.write_text(json.dumps(doc))
    calibrated = Inference(model)
    for colour in ((250, 10, 10), (10, 240, 20), (20, 20, 240), (150, 110, 0)):
        image = solid_colour_png(colour)
        a, b = plain.execute(image), calibrated.execute(image)
        assert np.argmax(a["values"]) == np.argmax(b["values"])
        assert max(b["values"]) < max(a["values"]) or max(a["values"]) == pytest.approx(1.0)
    # the decision rule reads the model's own probability: 0.95 raw stays above 0.9
    row = np.array([0.95, 0.03, 0.02])
    assert calibrated.to_result(row)["prediction"] == "Cat"
    assert calibrated.to_result(row)["values"][0] < 0.9
