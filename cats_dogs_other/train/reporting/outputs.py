"""The files of a model folder: the model and its metadata, metrics.json, the plots and the card."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.familiarity import FamiliarityGate
from cats_dogs_other.train.heads import History
from cats_dogs_other.train.provenance import TRAIN_COMMAND, Provenance
from cats_dogs_other.train.reporting.card import render_card
from cats_dogs_other.train.results import (
    ConfidenceRule,
    CrossValidation,
    Decision,
    FamiliarityReport,
    FineTuneReport,
    HeldOutReport,
    Metrics,
    ModelInfo,
    OODReport,
    ServingCheck,
    SplitReport,
    Timing,
    TrainingReport,
)
from cats_dogs_other.train.selection import REFIT_PREFIX, Selection
from cats_dogs_other.train.sources import Pool, describe
from cats_dogs_other.train.split import Split

MODEL_FILE = "model.keras"
OUTPUT_FILES = (
    MODEL_FILE,
    "model.onnx",
    "metadata.json",
    "metrics.json",
    "confusion_matrix.png",
    "training_curves.png",
    "MODEL_CARD.md",
)
GROUP_UNIT = "group: an ImageNet class (WordNet id in the file name), else one image"


@dataclass(frozen=True)
class Figures:
    """What the run measured once the model was saved."""

    rule: ConfidenceRule | None
    test: HeldOutReport
    cross_validation: CrossValidation | None
    serving_check: ServingCheck
    sha256: str
    timing: Timing
    ood: OODReport | None
    familiarity: FamiliarityReport | None = None
    fine_tuning: FineTuneReport | None = None


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_model(
    cfg: TrainConfig,
    model: Any,
    pool: Pool,
    selection: Selection,
    threshold: float | None,
    out: Path,
    gate: FamiliarityGate | None = None,
) -> None:
    """model.keras and the metadata.json the wheel reads (classes, size, decision rule)."""
    from kto.inference import Decision as WheelDecision
    from kto.inference import ModelMetadata, Preprocessing

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    decision = (
        WheelDecision(threshold=threshold, fallback=cfg.fallback_class) if threshold else None
    )
    ModelMetadata(
        name=cfg.name,
        version=cfg.version,
        classes=cfg.classes,
        input_size=(cfg.input_size, cfg.input_size),
        preprocessing=Preprocessing("none"),
        decision=decision,
        extra={
            "backbone": cfg.backbone,
            "head": selection.choice.label,
            "mirror_test_time_augmentation": selection.tta,
            "familiarity_gate": None
            if gate is None
            else {
                "prototypes": len(gate.prototypes),
                "threshold": gate.threshold,
                "slope": gate.slope,
                "fallback": cfg.fallback_class,
            },
            "trained_by": TRAIN_COMMAND,
            "trained_at": _utc_now(),
            "sources": {s.name: s.sha256 for s in pool.source_info},
            "model_card": "MODEL_CARD.md",
        },
    ).write(out)


def build_metrics(
    cfg: TrainConfig, pool: Pool, split: Split, selection: Selection, figures: Figures
) -> Metrics:
    import keras
    import tensorflow as tf

    return Metrics(
        trained_at=_utc_now(),
        model=_model_info(cfg, selection, figures),
        dataset=describe(pool),
        split=split_report(cfg, pool, split),
        selection=selection.report,
        confidence_rule=figures.rule,
        test=figures.test,
        cross_validation=figures.cross_validation,
        serving_check=figures.serving_check,
        ood=figures.ood,
        timing=figures.timing,
        training=TrainingReport(
            params=cfg.params(),
            epochs_run=len(selection.history.get("loss", [])),
            refit_epochs=selection.refit_epochs,
            refit_on="train + val + calibration" if selection.refit_epochs else None,
        ),
        environment={
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        familiarity_gate=figures.familiarity,
        fine_tuning=figures.fine_tuning,
    )


def _model_info(cfg: TrainConfig, selection: Selection, figures: Figures) -> ModelInfo:
    threshold = figures.rule.chosen if figures.rule else None
    return ModelInfo(
        name=cfg.name,
        version=cfg.version,
        file=MODEL_FILE,
        bytes=(Path(cfg.out) / MODEL_FILE).stat().st_size,
        sha256=figures.sha256,
        backbone=cfg.backbone,
        input_size=[cfg.input_size, cfg.input_size],
        head=selection.choice.label,
        mirror_test_time_augmentation=selection.tta,
        decision=Decision(threshold, cfg.fallback_class) if threshold else None,
    )


def split_report(cfg: TrainConfig, pool: Pool, split: Split) -> SplitReport:
    parts = [(p, getattr(split, p)) for p in ("train", "val", "calibration", "test")]
    return SplitReport(
        seed=cfg.seed,
        fractions={
            "val": cfg.val_fraction,
            "calibration": cfg.calibration_fraction,
            "test": cfg.test_fraction,
        },
        unit=GROUP_UNIT,
        sizes=split.sizes(),
        per_source={
            name: {part: int(np.sum(pool.sources[idx] == name)) for part, idx in parts}
            for name in pool.source_names
        },
        test_files=[f"{pool.sources[i]}/{pool.names[i]}" for i in split.test],
        held_out_imagenet_classes=sorted(
            {pool.groups[i].split(":", 1)[1] for i in split.test if pool.kinds[i]}
        ),
    )


def write_reports(out: Path, metrics: Metrics, history: History, provenance: Provenance) -> None:
    """metrics.json, the two plots and MODEL_CARD.md (the run's part: later commands add theirs)."""
    (out / "metrics.json").write_text(
        json.dumps(metrics.to_json(), indent=2) + "\n", encoding="utf-8"
    )
    overall = metrics.test.all
    confusion_matrix_png(
        overall.confusion_matrix.matrix,
        overall.confusion_matrix.labels,
        out / "confusion_matrix.png",
        f"held-out test split, all sources (n={overall.n}), "
        f"accuracy {overall.accuracy.value or 0:.1%}",
    )
    phases = [("head", {k: v for k, v in history.items() if not k.startswith(REFIT_PREFIX)})]
    if metrics.training.refit_epochs:
        refit = {
            k[len(REFIT_PREFIX) :]: v for k, v in history.items() if k.startswith(REFIT_PREFIX)
        }
        phases.append(("final", refit))
    training_curves_png(phases, out / "training_curves.png")
    (out / "MODEL_CARD.md").write_text(render_card(metrics, provenance), encoding="utf-8")


def folder_card(model_dir: Path, provenance: Provenance) -> str:
    """The card a model folder's own records give, in the order the commands that write them
    run: training (metrics.json), export (metadata.json ``exported``), calibration, int8."""
    from cats_dogs_other.train.export import card_section as export_section
    from cats_dogs_other.train.quantize import card_section as int8_section
    from cats_dogs_other.train.reporting.calibrate import card_section as calibration_section

    metrics = Metrics.read(model_dir)
    meta = json.loads((Path(model_dir) / "metadata.json").read_text(encoding="utf-8"))
    later = [
        (export_section, meta.get("exported")),
        (calibration_section, metrics.calibration),
        (int8_section, metrics.int8),
    ]
    card = render_card(metrics, provenance)
    for section, record in later:
        if record:
            card = card.rstrip("\n") + "\n\n" + section(record)
    return card


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str
) -> Path:
    plt = _pyplot()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=110)
    ax.imshow(m, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    threshold = m.max() / 2 if m.size else 0
    for (i, j), value in np.ndenumerate(m):
        color = "white" if value > threshold else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=12)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def training_curves_png(phases: Sequence[tuple[str, dict[str, list[float]]]], path: Path) -> Path:
    """Loss and accuracy per epoch, phases (head, fine-tuning) drawn one after the other."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    offset = 0
    for phase, history in phases:
        epochs = len(history.get("loss", []))
        x = np.arange(offset + 1, offset + epochs + 1)
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            if metric in history:
                ax.plot(x, history[metric], label=f"{phase}: train")
            if f"val_{metric}" in history:
                ax.plot(x, history[f"val_{metric}"], "--", label=f"{phase}: validation")
        if offset:
            for ax in axes:
                ax.axvline(offset + 0.5, color="grey", lw=0.8)
        offset += epochs
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("head on cached features (train = clean + augmented)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
