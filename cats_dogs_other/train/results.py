"""A run's figures as typed records: field names and order are metrics.json's keys, so pydantic
writes and reads the file back (validated) with no mapping per section."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, dataclass_transform

from pydantic import TypeAdapter

from cats_dogs_other.train.config import Weighting
from cats_dogs_other.train.stats import Proportion

METRICS_FORMAT = "cats_dogs_other.metrics/2"
# Written only when a run has them, so older metrics.json files round-trip unchanged.
LATER_SECTIONS = ("fine_tuning", "calibration", "manifest", "champion_gate", "int8")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Record:
    """Makes each subclass a dataclass (frozen unless it says ``frozen=False``): pydantic reads
    and writes those as JSON objects, in field order, with no code per record."""

    def __init_subclass__(cls, *, frozen: bool = True, kw_only: bool = False, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        dataclass(frozen=frozen, kw_only=kw_only)(cls)


class Decision(Record):
    threshold: float
    fallback: str


class ModelInfo(Record):
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


class SourceReport(Record):
    name: str
    format: str
    sha256: str
    images_listed: int
    per_class_listed: dict[str, int]
    images_used: int
    per_class_used: dict[str, int]
    skipped_count: int
    skipped: list[dict[str, str]]


class DuplicateRecord(Record):
    """``source/file`` was dropped as a copy of ``same_as``, for the reason ``why``."""

    source: str
    file: str
    label: str
    same_as: str
    same_as_label: str
    why: str


class DatasetReport(Record):
    sources: list[SourceReport]
    images_used: int
    per_class: dict[str, int]
    duplicates_removed: int
    duplicates: list[DuplicateRecord]


class SplitReport(Record):
    seed: int
    fractions: dict[str, float]
    unit: str
    sizes: dict[str, int]
    per_source: dict[str, dict[str, int]]
    test_files: list[str]
    held_out_imagenet_classes: list[str]


class Candidate(Record, frozen=False):
    hidden: int
    weighting: Weighting
    tta: bool
    val_macro_recall: float
    val_accuracy: float | None
    epochs: int
    chosen: bool = False


class SelectionReport(Record):
    candidates: list[Candidate]
    reason: str


class ConfidenceRule(Record):
    macro_recall_without: float
    best_threshold: float | None
    macro_recall_with_best: float
    chosen: float | None
    n: int


class FamiliarityReport(ConfidenceRule):
    prototypes: int = 0


class FineTuneReport(Record):
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


class ClassFigures(Record):
    precision: float
    recall: float
    f1: float
    support: int
    recall_ci: Proportion
    precision_ci: Proportion


class ConfusionMatrix(Record, kw_only=True):
    labels: list[str]
    rows: str = "true class"
    columns: str = "predicted class"
    matrix: list[list[int]]


class Section(Record):
    """Figures of one set of held-out images (all of them, or one source's)."""

    accuracy: Proportion
    n: int
    per_class: dict[str, ClassFigures]
    confusion_matrix: ConfusionMatrix


class HeldOutReport(Record):
    all: Section
    per_source: dict[str, Section]
    other_by_kind: dict[str, Proportion]
    other_held_out_classes: Proportion


class CrossValidation(Record):
    source: str
    folds: int
    seed: int
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    pooled: Proportion
    per_class_recall: dict[str, Proportion]


class ServingCheck(Record):
    what: str
    files: int
    same_prediction: int
    max_abs_probability_diff: float


class Timing(Record):
    ms_single_image: float
    ms_per_image_batch32: float
    intra_op_threads: int
    measured_with: str


class Miss(Record):
    file: str
    prediction: str


class OODReport(Record):
    sha256: str
    all: Proportion
    per_category: dict[str, Proportion]
    not_other: list[Miss]


class TrainingReport(Record, frozen=False):
    params: dict[str, Any]
    epochs_run: int
    refit_epochs: int | None
    refit_on: str | None
    seconds: float | None = None


class Metrics(Record, frozen=False, kw_only=True):
    format: str = METRICS_FORMAT
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
    # Added to the folder later, by reporting.calibrate, the manifest, reporting.champion, quantize.
    calibration: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    champion_gate: dict[str, Any] | None = None
    int8: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        plain: dict[str, Any] = _adapter().dump_python(self, mode="json")
        return {k: v for k, v in plain.items() if v is not None or k not in LATER_SECTIONS}

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
