"""One training run end to end: sources -> features (cached) -> split -> fine-tuning of the
backbone's top block (on cached activations) -> head selection -> familiarity gate -> rule -> CV
-> model dir -> held-out figures -> card -> ONNX export -> calibration and drift references
(:mod:`reporting`) -> MLflow.

Every choice (head shape, class weighting, mirror test-time augmentation, familiarity gate,
confidence rule) is made on the validation or calibration split; the test split only produces
the figures. The saved model is loaded back through ``kto.inference`` (the wheel the API serves
with) and must answer a sample of test FILES as the figures say.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.calibration import choose_threshold, decide
from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.crossval import cross_validate_source
from cats_dogs_other.train.export import export_model
from cats_dogs_other.train.familiarity import (
    FamiliarityGate,
    answer_probs,
    calibrate_gate,
    refit_gate,
)
from cats_dogs_other.train.feature_cache import FeatureCache, cache_key
from cats_dogs_other.train.features import make_extractor
from cats_dogs_other.train.finetune import FIRST_LAYER, adapt_backbone, fine_tunes, mid_view
from cats_dogs_other.train.finetune import make_extractor as make_mid_extractor
from cats_dogs_other.train.network import assemble, build_backbone
from cats_dogs_other.train.ood import measure_ood
from cats_dogs_other.train.reporting.calibrate import calibrate_model, write_report
from cats_dogs_other.train.reporting.evaluate import held_out_report, serving_check
from cats_dogs_other.train.reporting.outputs import (
    MODEL_FILE,
    OUTPUT_FILES,
    Figures,
    build_metrics,
    write_model,
    write_reports,
)
from cats_dogs_other.train.results import ConfidenceRule, CrossValidation, Metrics
from cats_dogs_other.train.selection import Selection, refit, select_head
from cats_dogs_other.train.sources import Pool, build_pool
from cats_dogs_other.train.split import Split, grouped_split
from cats_dogs_other.train.tracking import TrackedRun, log_run
from cats_dogs_other.train.versions import prepare_out

__all__ = ["OUTPUT_FILES", "RunResult", "run_training"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    out: Path
    metrics: Metrics
    tracked: TrackedRun | None = None


def run_training(cfg: TrainConfig) -> RunResult:
    started = time.perf_counter()
    out = prepare_out(Path(cfg.out))
    backbone, pool = collect(cfg)
    split = split_pool(pool, cfg)
    pool, tuning = adapt_backbone(backbone, pool, split, cfg)
    selection = select_head(pool, split, cfg)
    gate, gate_report = calibrate_gate(pool, split, cfg, selection)
    threshold, rule = calibrate(pool, split, cfg, selection, gate)
    cv = cross_validate_source(pool, split, cfg, selection, threshold, gate)
    selection = refit(pool, split, cfg, selection)
    gate = refit_gate(pool, split, cfg, selection, gate)
    model = assemble(backbone, selection.head, cfg.name, tta=selection.tta, gate=gate)
    write_model(cfg, model, pool, selection, threshold, out, gate)
    figures = measure(cfg, out, model, pool, split, selection, gate, rule, cv)
    figures = replace(figures, familiarity=gate_report, fine_tuning=tuning)
    metrics = build_metrics(cfg, pool, split, selection, figures)
    metrics.training.seconds = round(time.perf_counter() - started, 1)
    write_reports(out, metrics, selection.history, cfg.provenance)
    held_out = [pool.paths[i] for i in (*split.test, *split.val)]
    export_model(out, held_out or list(pool.paths), source="held-out test+val files")
    metrics.calibration = calibrate_run(out, pool, split)
    return RunResult(out, metrics, track(cfg, out, metrics))


def calibrate_run(out: Path, pool: Pool, split: Split) -> dict[str, Any] | None:
    """The served probabilities' calibration and the drift references (see reporting)."""
    if not len(split.calibration) or not len(split.test):
        log.info("no calibration: the calibration or test split is empty")
        return None
    rows = [(pool.paths[i], int(pool.labels[i])) for i in split.calibration]
    test = [(pool.paths[i], int(pool.labels[i])) for i in split.test]
    report = calibrate_model(out, rows, test)
    write_report(out, report)
    log.info("calibration: %s", report.to_dict()["test_after"])
    return report.to_dict()


def collect(cfg: TrainConfig) -> tuple[Any, Pool]:
    """The backbone, and every source's unique images with their (cached) features."""
    import keras

    side = cfg.input_size
    keras.utils.set_random_seed(cfg.seed)  # the tiny test backbone is random: same seed, same net
    backbone = build_backbone(cfg.backbone, (side, side), cfg.weights)
    views, extract = cfg.views, make_extractor(backbone, cfg.seed)
    if fine_tunes(cfg):  # the activations entering the fine-tuned block, cached as well
        views = (*views, *(mid_view(v) for v in cfg.views))
        extract = make_mid_extractor(backbone, FIRST_LAYER[cfg.backbone], cfg.seed)
    pool = build_pool(
        cfg.data_dirs,
        side=side,
        views=views,
        extract=extract,
        cache=FeatureCache(cfg.cache_dir, feature_key(backbone, cfg)),
        classes=cfg.classes,
        max_pixels=cfg.max_pixels,
        progress=cfg.progress,
    )
    return backbone, pool


def feature_key(backbone: Any, cfg: TrainConfig) -> str:
    """Hash of the backbone's actual weights (not the file name), side, decoder version and,
    when fine-tuning, the layer whose input the ``mid.*`` views hold."""
    from kto.inference import __version__ as decoder_version

    digest = hashlib.sha256()
    for array in backbone.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    mid_layer = FIRST_LAYER[cfg.backbone] if fine_tunes(cfg) else ""
    return cache_key(
        cfg.backbone,
        digest.hexdigest(),
        str(cfg.input_size),
        decoder_version,
        str(cfg.seed),
        mid_layer,
    )


def split_pool(pool: Pool, cfg: TrainConfig) -> Split:
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
    return split


def calibrate(
    pool: Pool, split: Split, cfg: TrainConfig, selection: Selection, gate: FamiliarityGate | None
) -> tuple[float | None, ConfidenceRule | None]:
    """The confidence rule's threshold (None: no rule) chosen on the calibration split, on the
    answers after the familiarity gate."""
    cal = split.calibration
    if not cfg.confidence_rule or not len(cal):
        return None, None
    probs = answer_probs(selection.head, gate, pool.features, cal, selection.tta)
    return choose_threshold(probs, pool.labels[cal], None, cfg.fallback, cfg.min_gain)


def measure(
    cfg: TrainConfig,
    out: Path,
    model: Any,
    pool: Pool,
    split: Split,
    selection: Selection,
    gate: FamiliarityGate | None,
    rule: ConfidenceRule | None,
    cv: CrossValidation | None,
) -> Figures:
    """Test figures from cached features, checked against the saved model through the wheel."""
    threshold = rule.chosen if rule else None
    test_probs = answer_probs(selection.head, gate, pool.features, split.test, selection.tta)
    test_pred = decide(test_probs, threshold, cfg.fallback)
    check, sha256, timing = serving_check(
        out / MODEL_FILE,
        pool,
        split.test,
        test_probs,
        test_pred,
        max_pixels=cfg.max_pixels,
        seed=cfg.seed,
    )
    ood = None
    if cfg.ood_dir is not None:
        ood = measure_ood(cfg.ood_dir, model, cfg.classes, threshold, cfg.fallback)
    return Figures(
        rule=rule,
        test=held_out_report(pool, split.test, test_pred),
        cross_validation=cv,
        serving_check=check,
        sha256=sha256,
        timing=timing,
        ood=ood,
    )


def track(cfg: TrainConfig, out: Path, metrics: Metrics) -> TrackedRun | None:
    if not cfg.tracking_uri:
        return None
    return log_run(
        tracking_uri=cfg.tracking_uri,
        experiment=cfg.experiment,
        params=cfg.params(),
        metrics=metrics,
        model_dir=out,
        register_name=cfg.register_name,
        version=cfg.version,
    )
