"""The files of a model folder: the model and its metadata, metrics.json, the plots and the card."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train import results
from cats_dogs_other.train.heads import History
from cats_dogs_other.train.provenance import TRAIN_COMMAND
from cats_dogs_other.train.reporting.card import PARTS, render_card
from cats_dogs_other.train.run import Run
from cats_dogs_other.train.selection import REFIT_PREFIX
from cats_dogs_other.train.sources import describe

MODEL_FILE = "model.keras"
PLOTS = ("confusion_matrix.png", "training_curves.png")
OUTPUT_FILES = (MODEL_FILE, "model.onnx", "metadata.json", "metrics.json", *PLOTS, "MODEL_CARD.md")
GROUP_UNIT = "group: an ImageNet class (WordNet id in the file name), else one image"


@dataclass(frozen=True)
class Figures:
    """What the run measured once the model was saved (the rest is on the run record)."""

    test: results.HeldOutReport
    serving_check: results.ServingCheck
    sha256: str
    timing: results.Timing
    ood: results.OODReport | None


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_model(run: Run) -> None:
    """model.keras and the metadata.json the wheel reads (classes, size, decision rule)."""
    from kto.inference import Decision, ModelMetadata, Preprocessing

    cfg, gate, threshold = run.cfg, run.gate, run.threshold
    run.out.mkdir(parents=True, exist_ok=True)
    run.model.save(run.out / MODEL_FILE)
    gate_record: dict[str, Any] | None = None
    if gate is not None:
        gate_record = {"prototypes": len(gate.prototypes), "threshold": gate.threshold}
        gate_record |= {"slope": gate.slope, "fallback": cfg.fallback_class}
    ModelMetadata(
        name=cfg.name,
        version=cfg.version,
        classes=cfg.classes,
        input_size=(cfg.input_size, cfg.input_size),
        preprocessing=Preprocessing("none"),
        decision=Decision(threshold=threshold, fallback=cfg.fallback_class) if threshold else None,
        extra={
            "backbone": cfg.backbone,
            "head": run.selection.choice.label,
            "mirror_test_time_augmentation": run.selection.tta,
            "familiarity_gate": gate_record,
            "trained_by": TRAIN_COMMAND,
            "trained_at": _utc_now(),
            "sources": {s.name: s.sha256 for s in run.pool.source_info},
            "model_card": "MODEL_CARD.md",
        },
    ).write(run.out)


def build_metrics(run: Run, figures: Figures) -> results.Metrics:
    import keras
    import tensorflow as tf

    cfg, selection, threshold = run.cfg, run.selection, run.threshold
    return results.Metrics(
        trained_at=_utc_now(),
        model=results.ModelInfo(
            name=cfg.name,
            version=cfg.version,
            file=MODEL_FILE,
            bytes=(run.out / MODEL_FILE).stat().st_size,
            sha256=figures.sha256,
            backbone=cfg.backbone,
            input_size=[cfg.input_size, cfg.input_size],
            head=selection.choice.label,
            mirror_test_time_augmentation=selection.tta,
            decision=results.Decision(threshold, cfg.fallback_class) if threshold else None,
        ),
        dataset=describe(run.pool),
        split=split_report(run),
        selection=selection.report,
        confidence_rule=run.rule,
        test=figures.test,
        cross_validation=run.cv,
        serving_check=figures.serving_check,
        ood=figures.ood,
        timing=figures.timing,
        training=results.TrainingReport(
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
        familiarity_gate=run.gate_report,
        fine_tuning=run.tuning,
    )


def split_report(run: Run) -> results.SplitReport:
    cfg, pool, split = run.cfg, run.pool, run.split
    fractions = (cfg.val_fraction, cfg.calibration_fraction, cfg.test_fraction)
    return results.SplitReport(
        seed=cfg.seed,
        fractions=dict(zip(PARTS[1:], fractions, strict=True)),
        unit=GROUP_UNIT,
        sizes=split.sizes(),
        per_source={
            name: {p: int(np.sum(pool.sources[getattr(split, p)] == name)) for p in PARTS}
            for name in pool.source_names
        },
        test_files=[f"{pool.sources[i]}/{pool.names[i]}" for i in split.test],
        held_out_imagenet_classes=sorted(
            {pool.groups[i].split(":", 1)[1] for i in split.test if pool.kinds[i]}
        ),
    )


def write_reports(run: Run) -> None:
    """metrics.json, the two plots and MODEL_CARD.md (the run's part: later commands add theirs)."""
    from matplotlib.figure import Figure

    out, metrics = run.out, run.metrics

    (out / "metrics.json").write_text(
        json.dumps(metrics.to_json(), indent=2) + "\n", encoding="utf-8"
    )
    overall = metrics.test.all
    matrix, classes = np.asarray(overall.confusion_matrix.matrix), overall.confusion_matrix.labels
    fig = Figure(figsize=(4.6, 4.0), dpi=110)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true")
    accuracy = f"accuracy {overall.accuracy.value or 0:.1%}"
    ax.set_title(f"held-out test split, all sources (n={overall.n}), {accuracy}", fontsize=10)
    for (i, j), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=12)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0])
    _training_curves(run.selection.history, bool(metrics.training.refit_epochs), out / PLOTS[1])
    (out / "MODEL_CARD.md").write_text(render_card(metrics, run.cfg.provenance), encoding="utf-8")


def _training_curves(history: History, refit: bool, path: Path) -> None:
    """Loss and accuracy per epoch, the head's then (after a line) the final refit's."""
    from matplotlib.figure import Figure

    phases = [("head", {k: v for k, v in history.items() if not k.startswith(REFIT_PREFIX)})]
    if refit:
        final = {
            k[len(REFIT_PREFIX) :]: v for k, v in history.items() if k.startswith(REFIT_PREFIX)
        }
        phases.append(("final", final))
    fig = Figure(figsize=(9, 3.6), dpi=110)
    axes = fig.subplots(1, 2)
    offset = 0
    for phase, h in phases:
        x = np.arange(offset + 1, offset + len(h.get("loss", [])) + 1)
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            if metric in h:
                ax.plot(x, h[metric], label=f"{phase}: train")
            if f"val_{metric}" in h:
                ax.plot(x, h[f"val_{metric}"], "--", label=f"{phase}: validation")
            if offset:
                ax.axvline(offset + 0.5, color="grey", lw=0.8)
        offset += len(x)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set(xlabel="epoch", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("head on cached features (train = clean + augmented)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
