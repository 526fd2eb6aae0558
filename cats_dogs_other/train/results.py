"""A run's figures as typed records: field names and order are metrics.json's keys, so pydantic
writes and reads the file back (validated) with no mapping per section."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from cats_dogs_other.train.config import Weighting
from cats_dogs_other.train.stats import Proportion

METRICS_FORMAT = "cats_dogs_other.metrics/2"
# Written only when a run has them, so older metrics.json files round-trip unchanged.
LATER_SECTIONS = ("fine_tuning", "calibration", "manifest", "champion_gate", "int8")


@dataclass(frozen=True)
class Decision:
    threshold: float
    fallback: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    file: str
    bytes: int
    sha256: str
    backbone: str
    input_size: list[int]
    head: str
    mirror_test_time_augmentation: bool
    decision: Decision | None


@dataclass(frozen=True)
class SourceReport:
    name: str
    format: str
    sha256: str
    images_listed: int
    per_class_listed: dict[str, int]
    images_used: int
    per_class_used: dict[str, int]
    skipped_count: int
    skipped: list[dict[str, str]]


@dataclass(frozen=True)
class DuplicateRecord:
    """``source/file`` was dropped as a copy of ``same_as``, for the reason ``why``."""

    source: str
    file: str
    label: str
    same_as: str
    same_as_label: str
    why: str


@dataclass(frozen=True)
class DatasetReport:
    sources: list[SourceReport]
    images_used: int
    per_class: dict[str, int]
    duplicates_removed: int
    duplicates: list[DuplicateRecord]


@dataclass(frozen=True)
class SplitReport:
    seed: int
    fractions: dict[str, float]
    unit: str
    sizes: dict[str, int]
    per_source: dict[str, dict[str, int]]
    test_files: list[str]
    held_out_imagenet_classes: list[str]


@dataclass
class Candidate:
    hidden: int
    weighting: Weighting
    tta: bool
    val_macro_recall: float
    val_accuracy: float | None
    epochs: int
    chosen: bool = False


@dataclass(frozen=True)
class SelectionReport:
    candidates: list[Candidate]
    reason: str


@dataclass(frozen=True)
class ConfidenceRule:
    macro_recall_without: float
    best_threshold: float | None
    macro_recall_with_best: float
    chosen: float | None
    n: int


@dataclass(frozen=True)
class FamiliarityReport(ConfidenceRule):
    """How the familiarity gate's threshold did on the validation + calibration splits."""

    prototypes: int = 0


@dataclass(frozen=True)
class FineTuneReport:
    first_layer: str
    trained_on: list[str]
    images: int
    views: list[str]
    trainable_weights: int
    epochs_run: int
    best_epoch: int
    learning_rate: float
    weight_decay: float
    val_loss_frozen: float | None
    val_loss_best: float | None
    kept: bool
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassFigures:
    precision: float
    recall: float
    f1: float
    support: int
    recall_ci: Proportion
    precision_ci: Proportion


@dataclass(frozen=True, kw_only=True)
class ConfusionMatrix:
    labels: list[str]
    rows: str = "true class"
    columns: str = "predicted class"
    matrix: list[list[int]]


@dataclass(frozen=True)
class Section:
    """Figures of one set of held-out images (all of them, or one source's)."""

    accuracy: Proportion
    n: int
    per_class: dict[str, ClassFigures]
    confusion_matrix: ConfusionMatrix


@dataclass(frozen=True)
class HeldOutReport:
    all: Section
    per_source: dict[str, Section]
    other_by_kind: dict[str, Proportion]
    other_held_out_classes: Proportion


@dataclass(frozen=True)
class CrossValidation:
    source: str
    folds: int
    seed: int
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    pooled: Proportion
    per_class_recall: dict[str, Proportion]


@dataclass(frozen=True)
class ServingCheck:
    what: str
    files: int
    same_prediction: int
    max_abs_probability_diff: float


@dataclass(frozen=True)
class Timing:
    ms_single_image: float
    ms_per_image_batch32: float
    intra_op_threads: int
    measured_with: str


@dataclass(frozen=True)
class Miss:
    file: str
    prediction: str


@dataclass(frozen=True)
class OODReport:
    sha256: str
    all: Proportion
    per_category: dict[str, Proportion]
    not_other: list[Miss]


@dataclass
class TrainingReport:
    params: dict[str, Any]
    epochs_run: int
    refit_epochs: int | None
    refit_on: str | None
    seconds: float | None = None


@dataclass
class Metrics:
    trained_at: str
    model: ModelInfo
    dataset: DatasetReport
    split: SplitReport
    selection: SelectionReport
    confidence_rule: ConfidenceRule | None
    test: HeldOutReport
    cross_validation: CrossValidation | None
    serving_check: ServingCheck
    ood: OODReport | None
    timing: Timing
    training: TrainingReport
    environment: dict[str, str]
    familiarity_gate: FamiliarityReport | None = None
    fine_tuning: FineTuneReport | None = None
    format: str = METRICS_FORMAT
    # Records added to the folder later: reporting.calibrate, the manifest, reporting.champion
    # and quantize.py.
    calibration: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    champion_gate: dict[str, Any] | None = None
    int8: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        plain: dict[str, Any] = _adapter().dump_python(self, mode="json")
        for key in LATER_SECTIONS:
            if plain.get(key) is None:
                plain.pop(key, None)
        return {"format": plain.pop("format"), **plain}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Metrics:
        """Validated by pydantic: a key of the wrong type fails here, not in the card."""
        return _adapter().validate_python(data)

    @classmethod
    def read(cls, model_dir: Path) -> Metrics:
        return cls.from_json(json.loads((Path(model_dir) / "metrics.json").read_text("utf-8")))


@cache
def _adapter() -> TypeAdapter[Metrics]:
    return TypeAdapter(Metrics)
