"""One training run, top to bottom: sources -> features (cached) -> split -> the backbone's top
block -> head -> familiarity gate -> confidence rule -> model folder -> figures -> ONNX export ->
calibration -> MLflow. Every choice is made on the validation or calibration split; the test
split only gives the figures, checked against the saved model through the serving wheel."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.calibration import choose_threshold, decide
from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.export import HELD_OUT, export_model
from cats_dogs_other.train.familiarity import calibrate_gate, pet_gate
from cats_dogs_other.train.feature_cache import FeatureCache, cache_key
from cats_dogs_other.train.features import make_extractor
from cats_dogs_other.train.finetune import FIRST_LAYER, adapt_backbone, fine_tunes, mid_view
from cats_dogs_other.train.finetune import make_extractor as make_mid_extractor
from cats_dogs_other.train.network import assemble, build_backbone
from cats_dogs_other.train.ood import measure_ood
from cats_dogs_other.train.reporting import outputs
from cats_dogs_other.train.reporting.calibrate import calibrate_model
from cats_dogs_other.train.reporting.evaluate import held_out_report, serving_check
from cats_dogs_other.train.run import Run
from cats_dogs_other.train.selection import cross_validate, refit, select_head
from cats_dogs_other.train.sources import Pool, build_pool
from cats_dogs_other.train.split import grouped_split
from cats_dogs_other.train.tracking import log_run
from cats_dogs_other.train.versions import prepare_out

log = logging.getLogger(__name__)


def run_training(cfg: TrainConfig) -> Run:
    started = time.perf_counter()
    out = prepare_out(Path(cfg.out))
    backbone, pool = collect(cfg)  # sources -> unique images -> features (cached)
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
    run = Run(cfg, pool, split, out)
    run.pool, run.tuning = adapt_backbone(backbone, run)  # top block, if it helps
    # head shape, class weighting, mirror pass: chosen on the validation split
    run.selection = select_head(run)
    run.gate, run.gate_report = calibrate_gate(run, run.selection.head, run.selection.tta)
    cal = split.calibration  # min_confidence: chosen on the answers after the gate
    if cfg.confidence_rule and len(cal):
        run.rule = choose_threshold(
            run.answers(cal), run.pool.labels[cal], None, cfg.fallback, cfg.min_gain
        )[1]
    gate_threshold = run.gate.threshold if run.gate else None
    run.cv = cross_validate(run, run.selection, run.threshold, gate_threshold)
    # head again on every non-test image; the gate's prototypes of every pet it saw
    run.selection = refit(run, run.selection)
    if run.gate is not None and run.selection.refit_epochs is not None:
        seen = np.concatenate([split.train, split.val, split.calibration])
        run.gate = pet_gate(run.pool, seen, cfg, run.gate.threshold)
    run.model = assemble(
        backbone, run.selection.head, cfg.name, tta=run.selection.tta, gate=run.gate
    )
    outputs.write_model(run)
    run.metrics = outputs.build_metrics(run, measure(run))
    run.metrics.training.seconds = round(time.perf_counter() - started, 1)
    outputs.write_reports(run)
    held_out = [run.pool.paths[i] for i in (*split.test, *split.val)]
    export_model(out, held_out or list(run.pool.paths), source=HELD_OUT)
    run.metrics.calibration = calibrate_run(run)
    run.tracked = log_run(cfg, run.metrics, out) if cfg.tracking_uri else None
    return run


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
    cache = FeatureCache(cfg.cache_dir, feature_key(backbone, cfg))
    pool = build_pool(
        cfg.data_dirs,
        side=side,
        views=views,
        extract=extract,
        cache=cache,
        classes=cfg.classes,
        max_pixels=cfg.max_pixels,
        progress=cfg.progress,
    )
    return backbone, pool


def feature_key(backbone: Any, cfg: TrainConfig) -> str:
    """Hash of the backbone's actual weights (not the file name), side, decoder version, seed
    and, when fine-tuning, the layer whose input the ``mid.*`` views hold."""
    from kto.inference import __version__ as decoder_version

    digest = hashlib.sha256()
    for array in backbone.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    mid_layer = FIRST_LAYER[cfg.backbone] if fine_tunes(cfg) else ""
    parts = (digest.hexdigest(), str(cfg.input_size), decoder_version, str(cfg.seed), mid_layer)
    return cache_key(cfg.backbone, *parts)


def measure(run: Run) -> outputs.Figures:
    """Test figures from cached features, checked against the saved model through the wheel."""
    cfg, test = run.cfg, run.split.test
    probs = run.answers(test)
    pred = decide(probs, run.threshold, cfg.fallback)
    check, sha256, timing = serving_check(run, probs, pred)
    ood = None
    if cfg.ood_dir is not None:
        ood = measure_ood(cfg.ood_dir, run.model, cfg.classes, run.threshold, cfg.fallback)
    return outputs.Figures(held_out_report(run.pool, test, pred), check, sha256, timing, ood)


def calibrate_run(run: Run) -> dict[str, Any] | None:
    """The served probabilities' calibration and the drift references (see reporting)."""
    pool, split = run.pool, run.split
    if not len(split.calibration) or not len(split.test):
        log.info("no calibration: the calibration or test split is empty")
        return None
    cal, test = (
        [(pool.paths[i], int(pool.labels[i])) for i in s] for s in (split.calibration, split.test)
    )
    report = calibrate_model(run.out, cal, test, write=True)
    log.info("calibration: %s", report.to_dict()["test_after"])
    return report.to_dict()
