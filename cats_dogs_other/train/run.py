"""The run record: its data, then what each step learnt, in the order the steps learn it. Its
own module so the pipeline and the reporting both take it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train import results
from cats_dogs_other.train.data import Data
from cats_dogs_other.train.familiarity import answer_probs
from cats_dogs_other.train.network import FamiliarityGate
from cats_dogs_other.train.selection import Selection
from cats_dogs_other.train.tracking import TrackedRun


@dataclass
class Run(Data):
    out: Path
    tuning: results.FineTuneReport | None = None
    selection: Selection = field(init=False)
    gate: FamiliarityGate | None = None
    gate_report: results.FamiliarityReport | None = None
    rule: results.ConfidenceRule | None = None
    cv: results.CrossValidation | None = None
    model: Any = None
    metrics: results.Metrics = field(init=False)
    tracked: TrackedRun | None = None

    @property
    def threshold(self) -> float | None:
        return self.rule.chosen if self.rule else None

    def answers(self, idx: np.ndarray) -> np.ndarray:
        """The assembled model's answers for ``idx`` from cached features (before the rule)."""
        sel = self.selection
        return answer_probs(sel.head, self.gate, self.pool.features, idx, sel.tta)
