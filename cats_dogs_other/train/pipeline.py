"""One training run end to end: data -> features -> CV -> head -> model dir -> served check.

The model directory is checked by loading it back through ``kto.inference.Inference`` (the
wheel the API serves with) and scoring the held-out test images from their FILES: the test
figures in metrics.json are what the server answers, decision rule included.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.card import render_card
from cats_dogs_other.train.dataset import Dataset, load_dataset
from cats_dogs_other.train.evaluate import (
    apply_decision,
    classification_metrics,
    predict_batches,
    time_forward,
)
from cats_dogs_other.train.export import export_model
from cats_dogs_other.train.features import FeatureBank, extract_bank, forward_fn
from cats_dogs_other.train.model import assemble, build_backbone
from cats_dogs_other.train.novelty import NoveltyGate, gate_probs, nearest_similarity
from cats_dogs_other.train.ood import (
    OODSet,
    calibrate_rule,
    calibrate_threshold,
    load_ood,
    midpoints,
    ood_report,
)
from cats_dogs_other.train.plots import confusion_matrix_png, training_curves_png
from cats_dogs_other.train.split import Split, stratified_split
from cats_dogs_other.train.train import (
    CVResult,
    TrainConfig,
    cross_validate,
    fine_tune,
    fit_head,
    novelty_reference,
)

log = logging.getLogger(__name__)

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


@dataclass
class Prepared:
    """Everything that depends on the input size, before the final head is trained."""

    side: int
    dataset: Dataset
    backbone: Any
    bank: FeatureBank
    cv: CVResult | None
    timing: dict[str, float]

    def summary(self, seed: int) -> dict[str, Any]:
        cv = self.cv.summary(seed) if self.cv else {}
        return {"input_size": self.side, **cv, **self.timing}


@dataclass
class RunResult:
    out: Path
    metrics: dict[str, Any]
    tracked: Any = None


def prepare(cfg: TrainConfig, side: int) -> Prepared:
    size = (side, side)
    backbone = build_backbone(cfg.backbone, size, cfg.weights)
    ds = load_dataset(
        cfg.data, size, classes=cfg.classes, max_pixels=cfg.max_pixels, progress=cfg.progress
    )
    bank = extract_bank(
        backbone, ds.images, passes=cfg.aug_passes, seed=cfg.seed, progress=cfg.progress
    )
    cv = None
    if cfg.cv_folds:
        log.info("cross-validating at %dx%d (%d folds)", side, side, cfg.cv_folds)
        factory = lambda: build_backbone(cfg.backbone, size, cfg.weights)  # noqa: E731
        cv = cross_validate(ds.images, ds.labels, bank, cfg, factory)
        log.info("  CV accuracy %.4f, folds %s", np.mean(cv.accuracies), cv.accuracies)
    timing = time_forward(forward_fn(backbone), size)
    return Prepared(side, ds, backbone, bank, cv, timing)


def choose_size(candidates: list[Prepared], seed: int) -> tuple[Prepared, dict[str, Any]]:
    """Best CV accuracy; within one image of it, the fastest (single-image latency) wins."""
    if len(candidates) == 1:
        only = candidates[0]
        return only, {"candidates": [only.summary(seed)], "chosen": only.side, "reason": "fixed"}
    n = len(candidates[0].dataset)
    best = max(float(np.mean(c.cv.accuracies)) for c in candidates if c.cv)
    close = [c for c in candidates if c.cv and float(np.mean(c.cv.accuracies)) >= best - 1 / n]
    chosen = min(close, key=lambda c: c.timing["ms_single_image"])
    reason = (
        f"highest cross-validated accuracy; candidates within one image ({1 / n:.2%}) of the "
        "best are tied and the fastest of them (single-image latency) is chosen"
    )
    return chosen, {
        "candidates": [c.summary(seed) for c in candidates],
        "chosen": chosen.side,
        "reason": reason,
    }


def run_training(cfg: TrainConfig) -> RunResult:
    started = time.perf_counter()
    sides = [cfg.input_size] if cfg.input_size else list(cfg.size_candidates)
    if len(sides) > 1 and not cfg.cv_folds:
        raise ValueError("choosing the input size needs cross-validation (--cv-folds >= 2)")
    prepared = [prepare(cfg, side) for side in sides]
    chosen, selection = choose_size(prepared, cfg.seed)
    ds = chosen.dataset
    split = stratified_split(
        ds.labels,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
        class_names=cfg.classes,
    )
    head, head_history = fit_head(chosen.bank, ds.labels, split.train, split.val, cfg)
    phases = [("head", head_history)]
    fine_tuned = cfg.fine_tune_layers > 0
    if fine_tuned:
        history = fine_tune(
            chosen.backbone, head, ds.images, ds.labels, split.train, split.val, cfg
        )
        phases.append(("fine-tuning", history))
    reference = novelty_reference(
        chosen.backbone, ds.images, split.train, cfg, None if fine_tuned else chosen.bank
    )
    rules = _calibrate_rules(cfg, chosen, split, head, reference)
    model = assemble(chosen.backbone, head, cfg.name, rules.gate)
    ood_section = _ood_section(cfg, model, rules)
    out = Path(cfg.out)
    _write_model(cfg, model, chosen, rules, out)
    plain = assemble(chosen.backbone, head, cfg.name)
    served = _served_metrics(cfg, out, ds, split, model, plain)
    metrics = _metrics(cfg, chosen, split, selection, served, ood_section, phases, rules)
    metrics["training"]["seconds"] = round(time.perf_counter() - started, 1)
    _write_reports(cfg, out, metrics, phases)
    held_out = [ds.paths[i] for i in (*split.test, *split.val)]
    export_model(out, held_out or list(ds.paths), source="held-out test+val files")
    tracked = None
    if cfg.tracking_uri:
        from cats_dogs_other.train.tracking import log_run

        tracked = log_run(
            tracking_uri=cfg.tracking_uri,
            experiment=cfg.experiment,
            params=cfg.params() | {"input_size": chosen.side},
            metrics=metrics,
            model_dir=out,
            register_name=cfg.register_name,
        )
    return RunResult(out, metrics, tracked)


@dataclass
class Rules:
    """What sends an image to "Other" besides the classifier, and the evidence behind it."""

    gate: NoveltyGate | None = None
    threshold: float | None = None
    details: dict[str, Any] | None = None
    ood: OODSet | None = None
    ood_plain: np.ndarray | None = None
    ood_similarity: np.ndarray | None = None


def _calibrate_rules(
    cfg: TrainConfig, chosen: Prepared, split: Split, head: Any, reference: np.ndarray
) -> Rules:
    """Novelty gate first, then ``min_confidence`` on what the gate lets through.

    In-distribution side: the CV out-of-fold predictions (every image, scored by a model that
    never saw it) when CV ran, else the validation split; OOD side: the calibration half. The
    test split and the held-out OOD half are never used here.
    """
    if cfg.ood_dir is None:
        return Rules()
    ds, size = chosen.dataset, (chosen.side, chosen.side)
    ood = load_ood(cfg.ood_dir, size, seed=cfg.seed)
    ood_features = predict_batches(chosen.backbone, ood.images)
    ood_plain = np.asarray(head(ood_features, training=False))
    ood_sim = nearest_similarity(ood_features, reference)
    fallback = cfg.classes.index(cfg.fallback_class)
    if chosen.cv is not None:
        id_probs, id_sim, id_labels = chosen.cv.oof_probs, chosen.cv.oof_similarity, ds.labels
        source = f"{chosen.cv.folds}-fold cross-validation out-of-fold predictions"
    else:
        val_features = predict_batches(chosen.backbone, ds.images[split.val])
        id_probs = np.asarray(head(val_features, training=False))
        id_sim, id_labels = nearest_similarity(val_features, reference), ds.labels[split.val]
        source = "validation split"
    cal = ood.calibration
    details: dict[str, Any] = {"in_distribution_source": source}
    gate_t = None
    if cfg.novelty_gate:

        def decide(t: float) -> tuple[np.ndarray, np.ndarray]:
            gated_id = gate_probs(id_probs, id_sim, t or None, fallback)
            gated_ood = gate_probs(ood_plain[cal], ood_sim[cal], t or None, fallback)
            return np.argmax(gated_id, axis=1), np.argmax(gated_ood, axis=1)

        gate_t, details["novelty_gate"] = calibrate_rule(
            decide,
            midpoints(id_sim, ood_sim[cal]),
            id_labels,
            fallback,
            max_id_accuracy_loss=cfg.max_id_accuracy_loss,
        )
    threshold = None
    if cfg.decision_rule:
        spent = 0.0
        if "novelty_gate" in details:
            g = details["novelty_gate"]
            spent = (
                g["in_distribution_accuracy_without_rule"] - g["in_distribution_accuracy_with_rule"]
            )
        threshold, details["min_confidence"] = calibrate_threshold(
            gate_probs(id_probs, id_sim, gate_t, fallback),
            id_labels,
            gate_probs(ood_plain[cal], ood_sim[cal], gate_t, fallback),
            fallback,
            max_id_accuracy_loss=max(cfg.max_id_accuracy_loss - spent, 0.0),
        )
    gate = NoveltyGate(reference, gate_t, fallback) if gate_t is not None else None
    return Rules(gate, threshold, details, ood, ood_plain, ood_sim)


def _ood_section(cfg: TrainConfig, model: Any, rules: Rules) -> dict[str, Any] | None:
    """OOD figures from the FINAL model's outputs (gate included), as the server answers."""
    if rules.ood is None or rules.ood_plain is None:
        return None
    fallback = cfg.classes.index(cfg.fallback_class)
    served = predict_batches(model, rules.ood.images)
    report = ood_report(
        rules.ood,
        rules.ood_plain,
        served,
        cfg.classes,
        rules.threshold,
        fallback,
        rules.ood_similarity,
    )
    report["calibration_details"] = rules.details
    if rules.ood.in_distribution:
        probs = predict_batches(model, np.stack([img for _, img, _ in rules.ood.in_distribution]))
        decided = apply_decision(probs, rules.threshold, fallback)
        report["in_distribution_checks"] = [
            {
                "file": name,
                "expected": expected,
                "prediction": cfg.classes[int(decided[i])],
                "confidence": round(float(probs[i].max()), 4),
            }
            for i, (name, _, expected) in enumerate(rules.ood.in_distribution)
        ]
    return report


def _gate_summary(rules: Rules) -> dict[str, Any] | None:
    if rules.gate is None:
        return None
    return {
        "rule": "nearest-training-image cosine similarity below threshold -> fallback",
        "threshold": rules.gate.threshold,
        "sharpness": rules.gate.sharpness,
        "reference_vectors": int(rules.gate.reference.shape[0]),
        "where": "inside model.keras (layers named novelty_*)",
    }


def _write_model(cfg: TrainConfig, model: Any, chosen: Prepared, rules: Rules, out: Path) -> None:
    from kto.inference import Decision, ModelMetadata, Preprocessing

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    threshold = rules.threshold
    decision = Decision(threshold=threshold, fallback=cfg.fallback_class) if threshold else None
    ModelMetadata(
        name=cfg.name,
        version=cfg.version,
        classes=cfg.classes,
        input_size=(chosen.side, chosen.side),
        preprocessing=Preprocessing("none"),
        decision=decision,
        extra={
            "backbone": cfg.backbone,
            "novelty_gate": _gate_summary(rules),
            "trained_by": "python -m cats_dogs_other.train",
            "dataset_sha256": chosen.dataset.sha256,
            "model_card": "MODEL_CARD.md",
        },
    ).write(out)


def _served_metrics(
    cfg: TrainConfig, out: Path, ds: Dataset, split: Split, model: Any, plain: Any
) -> dict[str, Any]:
    """Reload through the wheel and classify the val/test FILES as the API would; also score
    the classifier alone (no gate, no threshold) for comparison."""
    import tensorflow as tf
    from kto.inference import Inference

    inference = Inference(out / MODEL_FILE, max_pixels=cfg.max_pixels, warmup=False)
    result: dict[str, Any] = {"sha256": inference.sha256}
    index = {c: i for i, c in enumerate(cfg.classes)}
    for name, idx in (("val", split.val), ("test", split.test)):
        answers = inference.execute_batch([ds.paths[i] for i in idx]) if len(idx) else []
        probs = np.asarray([a["values"] for a in answers], np.float32).reshape(-1, len(index))
        served = np.asarray([index[a["prediction"]] for a in answers], np.int64)
        result[name] = classification_metrics(ds.labels[idx], served, cfg.classes)
        alone = np.argmax(predict_batches(plain, ds.images[idx]), axis=1) if len(idx) else served
        result[f"{name}_classifier_alone"] = classification_metrics(
            ds.labels[idx], alone, cfg.classes
        )
        if len(idx):
            trainer_probs = predict_batches(model, ds.images[idx])
            result[f"{name}_max_abs_diff"] = float(np.abs(trainer_probs - probs).max())
    size = inference.input_size
    result["timing"] = time_forward(inference.predict_arrays, size) | {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "measured_with": "kto.inference.Inference.predict_arrays",
    }
    return result


def _metrics(
    cfg: TrainConfig,
    chosen: Prepared,
    split: Split,
    selection: dict[str, Any],
    served: dict[str, Any],
    ood: dict[str, Any] | None,
    phases: list[tuple[str, dict[str, list[float]]]],
    rules: Rules,
) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    ds = chosen.dataset
    model_file = Path(cfg.out) / MODEL_FILE
    return {
        "format": "cats_dogs_other.metrics/1",
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {
            "name": cfg.name,
            "version": cfg.version,
            "file": MODEL_FILE,
            "bytes": model_file.stat().st_size,
            "sha256": served["sha256"],
            "backbone": cfg.backbone,
            "input_size": [chosen.side, chosen.side],
            "decision": json.loads((Path(cfg.out) / "metadata.json").read_text())["decision"],
            "novelty_gate": _gate_summary(rules),
        },
        "dataset": {
            "name": Path(cfg.data).name,
            "format": ds.format,
            "sha256": ds.sha256,
            "images_listed": len(ds) + len(ds.skipped),
            "images_used": len(ds),
            "per_class": ds.class_counts(),
            "skipped_count": len(ds.skipped),
            "skipped": ds.skipped,
        },
        "split": {
            "seed": cfg.seed,
            "fractions": {"val": cfg.val_fraction, "test": cfg.test_fraction},
            "sizes": split.sizes(),
            "test_files": [ds.names[i] for i in split.test],
        },
        "test": served["test"],
        "test_classifier_alone": served["test_classifier_alone"],
        "val": served["val"],
        "serving_check": {
            "what": "test/val files classified through kto.inference vs the in-memory model",
            "max_abs_probability_diff": max(
                served.get("test_max_abs_diff", 0.0), served.get("val_max_abs_diff", 0.0)
            ),
        },
        "cross_validation": chosen.cv.summary(cfg.seed) if chosen.cv else None,
        "input_size_selection": selection,
        "ood": ood,
        "timing": served["timing"],
        "training": {
            "params": cfg.params() | {"input_size": chosen.side},
            "epochs_run": {phase: len(h.get("loss", [])) for phase, h in phases},
        },
        "environment": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


def _write_reports(cfg: TrainConfig, out: Path, metrics: dict[str, Any], phases: list[Any]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    test = metrics["test"]
    confusion_matrix_png(
        test["confusion_matrix"]["matrix"],
        cfg.classes,
        out / "confusion_matrix.png",
        f"held-out test split (n={test['n']}), accuracy {test['accuracy'] or 0:.1%}",
    )
    training_curves_png(phases, out / "training_curves.png")
    (out / "MODEL_CARD.md").write_text(render_card(metrics, cfg), encoding="utf-8")
