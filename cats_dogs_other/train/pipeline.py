"""One training run end to end: sources -> features (cached) -> split -> head selection ->
rule -> CV -> model dir -> export steps -> held-out figures -> card -> MLflow.

Every choice (head shape, class weighting, mirror test-time augmentation, confidence rule) is
made on the validation or calibration split; the test split only produces the figures. The
saved model is loaded back through ``kto.inference`` (the wheel the API serves with) and must
answer a sample of test FILES as the figures say.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.card import render_card
from cats_dogs_other.train.evaluate import held_out_report, time_forward
from cats_dogs_other.train.export import export_model
from cats_dogs_other.train.feature_cache import FeatureCache, cache_key
from cats_dogs_other.train.features import make_extractor
from cats_dogs_other.train.model import assemble, build_backbone
from cats_dogs_other.train.plots import confusion_matrix_png, training_curves_png
from cats_dogs_other.train.sources import Pool, build_pool, describe
from cats_dogs_other.train.split import Split, grouped_split
from cats_dogs_other.train.train import (
    HeadChoice,
    TrainConfig,
    choose_threshold,
    cross_validate,
    decide,
    fit_head,
    head_probs,
    macro_recall,
)
from cats_dogs_other.train.versions import prepare_out

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
SERVING_CHECK_FILES = 48


@dataclass
class RunResult:
    out: Path
    metrics: dict[str, Any]
    tracked: Any = None


@dataclass
class Selection:
    choice: HeadChoice
    tta: bool
    head: Any
    history: dict[str, list[float]]
    table: list[dict[str, Any]]
    reason: str
    refit_epochs: int | None = None


def run_training(cfg: TrainConfig) -> RunResult:
    started = time.perf_counter()
    out = prepare_out(Path(cfg.out))
    side = cfg.input_size
    import keras

    keras.utils.set_random_seed(cfg.seed)  # the tiny test backbone is random: same seed, same net
    backbone = build_backbone(cfg.backbone, (side, side), cfg.weights)
    pool = build_pool(
        cfg.data_dirs,
        side=side,
        views=cfg.views,
        extract=make_extractor(backbone, cfg.seed),
        cache=FeatureCache(cfg.cache_dir, _backbone_key(backbone, cfg)),
        classes=cfg.classes,
        max_pixels=cfg.max_pixels,
        progress=cfg.progress,
    )
    split = grouped_split(
        pool.labels,
        pool.sources,
        pool.groups,
        val_fraction=cfg.val_fraction,
        calibration_fraction=cfg.calibration_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
    )
    log.info("split: %s", split.sizes())
    selection = select_head(pool, split, cfg)
    fallback = cfg.classes.index(cfg.fallback_class)
    threshold, rule = None, None
    if cfg.confidence_rule and len(split.calibration):
        cal = split.calibration
        threshold, rule = choose_threshold(
            head_probs(selection.head, pool.features, cal, selection.tta),
            pool.labels[cal],
            None,
            fallback,
            cfg.min_gain,
        )
    cv = _cross_validation(pool, split, cfg, selection, threshold)
    selection = refit(pool, split, cfg, selection)
    model = assemble(backbone, selection.head, cfg.name, tta=selection.tta)
    _write_model(cfg, model, pool, selection, threshold, out)
    test_probs = head_probs(selection.head, pool.features, split.test, selection.tta)
    test_pred = decide(test_probs, threshold, fallback)
    report = held_out_report(pool, split.test, test_pred)
    served = _serving_check(cfg, out, pool, split.test, test_probs, test_pred)
    ood = _ood_section(cfg, model, threshold, fallback)
    metrics = _metrics(cfg, pool, split, selection, rule, threshold, cv, report, served, ood)
    metrics["training"]["seconds"] = round(time.perf_counter() - started, 1)
    _write_reports(cfg, out, metrics, selection)
    held_out = [pool.paths[i] for i in (*split.test, *split.val)]
    export_model(out, held_out or list(pool.paths), source="held-out test+val files")
    tracked = None
    if cfg.tracking_uri:
        from cats_dogs_other.train.tracking import log_run

        tracked = log_run(
            tracking_uri=cfg.tracking_uri,
            experiment=cfg.experiment,
            params=cfg.params(),
            metrics=metrics,
            model_dir=out,
            register_name=cfg.register_name,
            version=cfg.version,
        )
    return RunResult(out, metrics, tracked)


def _backbone_key(backbone: Any, cfg: TrainConfig) -> str:
    """Hash of the backbone's actual weights (not the file name), side and decoder version."""
    from kto.inference import __version__ as decoder_version

    digest = hashlib.sha256()
    for array in backbone.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return cache_key(
        cfg.backbone, digest.hexdigest(), str(cfg.input_size), decoder_version, str(cfg.seed)
    )


def select_head(pool: Pool, split: Split, cfg: TrainConfig) -> Selection:
    """Every (head shape, weighting) is trained on the training split and scored, with and
    without the mirror pass, by macro recall over the classes of the VALIDATION split.
    The simplest candidate within ``min_gain`` of the best wins (linear before MLP, no mirror
    pass before mirror pass, no weighting before class before stratum)."""
    val = split.val
    rows: list[dict[str, Any]] = []
    heads: dict[HeadChoice, tuple[Any, dict[str, list[float]]]] = {}
    for hidden in cfg.hidden_candidates:
        for weighting in cfg.weighting_candidates:
            choice = HeadChoice(hidden, weighting)
            head, history = fit_head(
                pool.features,
                pool.labels,
                pool.sources,
                split.train,
                val,
                cfg,
                choice,
                desc=f"head: {choice.label}",
            )
            heads[choice] = (head, history)
            for tta in cfg.tta_candidates:
                pred = decide(head_probs(head, pool.features, val, tta), None, 0)
                score = macro_recall(pool.labels[val], pred) if len(val) else 0.0
                rows.append(
                    {
                        "hidden": hidden,
                        "weighting": weighting,
                        "tta": tta,
                        "val_macro_recall": round(score, 4),
                        "val_accuracy": round(float(np.mean(pred == pool.labels[val])), 4)
                        if len(val)
                        else None,
                        "epochs": len(history.get("loss", [])),
                    }
                )
    best = max(r["val_macro_recall"] for r in rows)
    simplest = min(
        (r for r in rows if r["val_macro_recall"] >= best - cfg.min_gain),
        key=lambda r: (r["hidden"] > 0, r["tta"], cfg.weighting_candidates.index(r["weighting"])),
    )
    for r in rows:
        r["chosen"] = r is simplest
    choice = HeadChoice(simplest["hidden"], simplest["weighting"])
    head, history = heads[choice]
    reason = (
        f"best validation macro recall {best:.4f}; the simplest candidate within {cfg.min_gain} "
        f"of it is {choice.label}, mirror pass {'on' if simplest['tta'] else 'off'} "
        f"({simplest['val_macro_recall']:.4f})"
    )
    log.info("head selection: %s", reason)
    return Selection(choice, simplest["tta"], head, history, rows, reason)


def refit(pool: Pool, split: Split, cfg: TrainConfig, selection: Selection) -> Selection:
    """The chosen head again, on training + validation + calibration images, for the number of
    epochs early stopping picked: more ImageNet classes seen as "Other" is what generalises to
    unseen ones. Choices already made stay; the test split is still untouched."""
    if not cfg.refit or not selection.history.get("val_loss"):
        return selection
    best_epochs = _best_epochs(selection, cfg)
    everything = np.concatenate([split.train, split.val, split.calibration])
    head, history = fit_head(
        pool.features,
        pool.labels,
        pool.sources,
        everything,
        np.zeros(0, np.int64),
        replace(cfg, epochs=best_epochs),
        selection.choice,
        desc="final head (train + val + calibration)",
    )
    history = {f"refit_{k}": v for k, v in history.items()}
    return replace(
        selection, head=head, history=selection.history | history, refit_epochs=best_epochs
    )


def _cross_validation(
    pool: Pool, split: Split, cfg: TrainConfig, selection: Selection, threshold: float | None
) -> dict[str, Any] | None:
    if not cfg.cv_folds:
        return None
    source = cfg.cv_source or pool.source_names[0]
    cv_idx = np.flatnonzero(pool.sources == source)
    not_test = np.setdiff1d(np.arange(len(pool)), split.test)
    extra_train = np.intersect1d(not_test, np.flatnonzero(pool.sources != source))
    log.info("%d-fold cross-validation on %s (%d images)", cfg.cv_folds, source, len(cv_idx))
    result = cross_validate(
        pool.features,
        pool.labels,
        pool.sources,
        cv_idx,
        extra_train,
        cfg,
        selection.choice,
        selection.tta,
        threshold,
        _best_epochs(selection, cfg),
    )
    return result.summary(cfg.seed)


def _best_epochs(selection: Selection, cfg: TrainConfig) -> int:
    val_loss = selection.history.get("val_loss")
    return int(np.argmin(val_loss)) + 1 if val_loss else cfg.epochs


def _write_model(
    cfg: TrainConfig,
    model: Any,
    pool: Pool,
    selection: Selection,
    threshold: float | None,
    out: Path,
) -> None:
    from kto.inference import Decision, ModelMetadata, Preprocessing

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    decision = Decision(threshold=threshold, fallback=cfg.fallback_class) if threshold else None
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
            "trained_by": "python -m cats_dogs_other.train",
            "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sources": {s.name: s.sha256 for s in pool.source_info},
            "model_card": "MODEL_CARD.md",
        },
    ).write(out)


def _serving_check(
    cfg: TrainConfig,
    out: Path,
    pool: Pool,
    test: np.ndarray,
    probs: np.ndarray,
    pred: np.ndarray,
) -> dict[str, Any]:
    """Reload through the wheel and classify a sample of test FILES as the API would: the
    figures come from cached features, this proves the saved model answers the same."""
    import tensorflow as tf
    from kto.inference import Inference

    inference = Inference(out / MODEL_FILE, max_pixels=cfg.max_pixels, warmup=False)
    rng = np.random.default_rng(cfg.seed)
    k = min(SERVING_CHECK_FILES, len(test))
    sample = np.sort(rng.choice(len(test), size=k, replace=False)) if k else np.zeros(0, int)
    answers = inference.execute_batch([pool.paths[test[i]] for i in sample]) if k else []
    served = np.asarray([a["values"] for a in answers], np.float32).reshape(-1, len(cfg.classes))
    index = {c: i for i, c in enumerate(cfg.classes)}
    agree = sum(index[a["prediction"]] == pred[i] for a, i in zip(answers, sample, strict=True))
    return {
        "sha256": inference.sha256,
        "what": "test files classified through kto.inference vs the figures' cached features",
        "files": k,
        "same_prediction": int(agree),
        "max_abs_probability_diff": float(np.abs(served - probs[sample]).max()) if k else 0.0,
        "timing": time_forward(inference.predict_arrays, inference.input_size)
        | {
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "measured_with": "kto.inference.Inference.predict_arrays",
        },
    }


def _ood_section(
    cfg: TrainConfig, model: Any, threshold: float | None, fallback: int
) -> dict[str, Any] | None:
    """Pictures from outside ../shared (see the ``ood`` command), none used for any choice."""
    if cfg.ood_dir is None:
        return None
    from cats_dogs_other.train.evaluate import predict_batches
    from cats_dogs_other.train.ood import load_ood
    from cats_dogs_other.train.stats import proportion

    ood = load_ood(cfg.ood_dir, (cfg.input_size, cfg.input_size), seed=cfg.seed)
    pred = decide(predict_batches(model, ood.images), threshold, fallback)
    cats = np.asarray(ood.categories)
    return {
        "sha256": ood.sha256,
        "all": proportion(int(np.sum(pred == fallback)), len(pred)),
        "per_category": {
            c: proportion(int(np.sum(pred[cats == c] == fallback)), int(np.sum(cats == c)))
            for c in sorted(set(ood.categories))
        },
        "not_other": [
            {"file": n, "prediction": cfg.classes[int(p)]}
            for n, p in zip(ood.names, pred, strict=True)
            if p != fallback
        ],
    }


def _metrics(
    cfg: TrainConfig,
    pool: Pool,
    split: Split,
    selection: Selection,
    rule: dict[str, Any] | None,
    threshold: float | None,
    cv: dict[str, Any] | None,
    report: dict[str, Any],
    served: dict[str, Any],
    ood: dict[str, Any] | None,
) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    model_file = Path(cfg.out) / MODEL_FILE
    return {
        "format": "cats_dogs_other.metrics/2",
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {
            "name": cfg.name,
            "version": cfg.version,
            "file": MODEL_FILE,
            "bytes": model_file.stat().st_size,
            "sha256": served["sha256"],
            "backbone": cfg.backbone,
            "input_size": [cfg.input_size, cfg.input_size],
            "head": selection.choice.label,
            "mirror_test_time_augmentation": selection.tta,
            "decision": {"threshold": threshold, "fallback": cfg.fallback_class}
            if threshold
            else None,
        },
        "dataset": describe(pool),
        "split": {
            "seed": cfg.seed,
            "fractions": {
                "val": cfg.val_fraction,
                "calibration": cfg.calibration_fraction,
                "test": cfg.test_fraction,
            },
            "unit": "group: an ImageNet class (WordNet id in the file name), else one image",
            "sizes": split.sizes(),
            "per_source": {
                name: {
                    part: int(np.sum(pool.sources[idx] == name))
                    for part, idx in (
                        ("train", split.train),
                        ("val", split.val),
                        ("calibration", split.calibration),
                        ("test", split.test),
                    )
                }
                for name in pool.source_names
            },
            "test_files": [f"{pool.sources[i]}/{pool.names[i]}" for i in split.test],
            "held_out_imagenet_classes": sorted(
                {pool.groups[i].split(":", 1)[1] for i in split.test if pool.kinds[i]}
            ),
        },
        "selection": {"candidates": selection.table, "reason": selection.reason},
        "confidence_rule": rule,
        "test": report,
        "cross_validation": cv,
        "serving_check": {k: v for k, v in served.items() if k not in ("sha256", "timing")},
        "ood": ood,
        "timing": served["timing"],
        "training": {
            "params": cfg.params(),
            "epochs_run": len(selection.history.get("loss", [])),
            "refit_epochs": selection.refit_epochs,
            "refit_on": "train + val + calibration" if selection.refit_epochs else None,
        },
        "environment": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


def _write_reports(
    cfg: TrainConfig, out: Path, metrics: dict[str, Any], selection: Selection
) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    overall = metrics["test"]["all"]
    confusion_matrix_png(
        overall["confusion_matrix"]["matrix"],
        cfg.classes,
        out / "confusion_matrix.png",
        f"held-out test split, all sources (n={overall['n']}), "
        f"accuracy {overall['accuracy']['value'] or 0:.1%}",
    )
    h = selection.history
    phases = [("head", {k: v for k, v in h.items() if not k.startswith("refit_")})]
    if selection.refit_epochs:
        phases.append(("final", {k[6:]: v for k, v in h.items() if k.startswith("refit_")}))
    training_curves_png(phases, out / "training_curves.png")
    (out / "MODEL_CARD.md").write_text(render_card(metrics, cfg), encoding="utf-8")
