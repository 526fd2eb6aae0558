"""The typed results are metrics.json: reading the file and writing it back changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.reporting.heldout import classes_of, read_metrics
from cats_dogs_other.train.results import LATER_SECTIONS, FamiliarityReport, Metrics
from cats_dogs_other.train.versions import BUNDLED_MODEL


def test_the_bundled_metrics_round_trip_byte_for_byte(bundled_metrics: Metrics) -> None:
    written = json.dumps(bundled_metrics.to_json(), indent=2) + "\n"
    assert written == (BUNDLED_MODEL / "metrics.json").read_text()


def test_sections_are_typed_records(bundled_metrics: Metrics) -> None:
    test = bundled_metrics.test
    cat = test.per_source["cats_dogs_other"].per_class["Cat"]
    assert cat.recall_ci.n == cat.support and cat.recall_ci.value == cat.recall
    # the bundled model answers Other through its familiarity gate, with no min_confidence rule
    assert bundled_metrics.model.decision is None
    gate = bundled_metrics.familiarity_gate
    assert isinstance(gate, FamiliarityReport) and gate.chosen is not None
    assert gate.macro_recall_with_best > gate.macro_recall_without and gate.prototypes == 512
    assert [c.chosen for c in bundled_metrics.selection.candidates].count(True) == 1


def _bundled_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BUNDLED_MODEL / "metrics.json").read_text())
    return data


def test_every_later_section_round_trips_and_an_absent_one_stays_absent() -> None:
    """calibration, int8 (in the bundled file), manifest and champion_gate (added here) are
    written back as read; a run without them writes no key (older files stay unchanged)."""
    data = _bundled_json()
    int8 = data.pop("int8")  # the sections keep their field order: int8 last
    data["manifest"] = {"partial": False, "sources": {"a": "0" * 64}}
    data["champion_gate"] = {"passed": True, "targets": [{"name": "all", "n": 3}]}
    data["int8"] = int8
    again = Metrics.from_json(json.loads(json.dumps(data))).to_json()
    assert again == data and list(again) == list(data)
    for key in LATER_SECTIONS:
        data.pop(key, None)
    assert list(Metrics.from_json(data).to_json()) == list(data)


def test_a_value_of_the_wrong_type_fails_where_it_is_read(tmp_path: Path) -> None:
    data = _bundled_json()
    data["test"]["all"]["accuracy"]["k"] = "many"
    with pytest.raises(ValidationError):
        Metrics.from_json(data)
    (tmp_path / "metrics.json").write_text(json.dumps(data))
    with pytest.raises(TrainingError, match=r"metrics.json: test\.all\.accuracy\.k: "):
        read_metrics(tmp_path)
    with pytest.raises(TrainingError, match="not a trained model folder"):
        read_metrics(tmp_path / "none")


def test_a_missing_section_is_named() -> None:
    data = _bundled_json()
    del data["split"]
    with pytest.raises(ValidationError, match="split"):
        Metrics.from_json(data)


def test_the_runs_classes_are_its_models_output_order(bundled_metrics: Metrics) -> None:
    assert classes_of(bundled_metrics) == ("Cat", "Dog", "Other")
    assert classes_of(Metrics.read(BUNDLED_MODEL)) == tuple(
        json.loads((BUNDLED_MODEL / "metadata.json").read_text())["classes"]
    )


def test_a_familiarity_report_is_a_confidence_rule_with_prototypes(
    bundled_metrics: Metrics,
) -> None:
    gate = bundled_metrics.familiarity_gate
    assert gate is not None
    assert list(to_plain(gate)) == [*to_plain(bundled_metrics.confidence_rule), "prototypes"]


def to_plain(record: object) -> dict[str, Any]:
    plain: dict[str, Any] = TypeAdapter(type(record)).dump_python(record, mode="json")
    return plain
