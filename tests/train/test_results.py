"""The typed results are metrics.json: reading the file and writing it back changes nothing."""

from __future__ import annotations

import json

from cats_dogs_other.train.results import FamiliarityReport, Metrics
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
