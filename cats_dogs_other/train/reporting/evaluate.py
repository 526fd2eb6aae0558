"""Figures of held-out images, and the check that the saved model answers as they say."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from cats_dogs_other.train.reporting.outputs import MODEL_FILE
from cats_dogs_other.train.results import (
    ClassFigures,
    ConfusionMatrix,
    HeldOutReport,
    Section,
    ServingCheck,
    Timing,
)
from cats_dogs_other.train.run import Run
from cats_dogs_other.train.sources import Pool
from cats_dogs_other.train.stats import proportion

SERVING_CHECK_FILES = 48


def section(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> Section:
    """Accuracy, recall and precision as proportions with their n and 95% Wilson interval."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(classes)))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: ClassFigures(
            precision=round(float(precision[i]), 4),
            recall=round(float(recall[i]), 4),
            f1=round(float(f1[i]), 4),
            support=int(support[i]),
            recall_ci=proportion(int(matrix[i, i]), int(matrix[i].sum())),
            precision_ci=proportion(int(matrix[i, i]), int(matrix[:, i].sum())),
        )
        for i, name in enumerate(classes)
    }
    return Section(
        accuracy=proportion(int(np.sum(y_true == y_pred)), len(y_true)),
        n=len(y_true),
        per_class=per_class,
        confusion_matrix=ConfusionMatrix(labels=list(classes), matrix=matrix.tolist()),
    )


def held_out_report(pool: Pool, idx: np.ndarray, pred: np.ndarray) -> HeldOutReport:
    """Figures for held-out images ``idx`` answered ``pred``: all, per source, and the share of
    held-out ImageNet "Other" classes answered Other, by kind."""
    classes = pool.classes
    y, sources = pool.labels[idx], pool.sources[idx]
    fallback = classes.index("Other") if "Other" in classes else len(classes) - 1
    kinds = np.asarray([pool.kinds[i] or "" for i in idx])
    other = (y == fallback) & (kinds != "")
    by_kind = {
        kind: proportion(
            int(np.sum(pred[other & (kinds == kind)] == fallback)),
            int(np.sum(other & (kinds == kind))),
        )
        for kind in sorted(set(kinds[other]))
    }
    return HeldOutReport(
        all=section(y, pred, classes),
        per_source={
            name: section(y[sources == name], pred[sources == name], classes)
            for name in pool.source_names
            if np.any(sources == name)
        },
        other_by_kind=by_kind,
        other_held_out_classes=proportion(int(np.sum(pred[other] == fallback)), int(other.sum())),
    )


def serving_check(
    run: Run, probs: np.ndarray, pred: np.ndarray
) -> tuple[ServingCheck, str, Timing]:
    """Test FILES through the wheel (the figures come from cached features): the check, the
    served file's sha256 and the wheel's median latency, one image alone and 32 at a time."""
    import tensorflow as tf
    from kto.inference import Inference

    pool, test, seed = run.pool, run.split.test, run.cfg.seed
    inference = Inference(run.out / MODEL_FILE, max_pixels=run.cfg.max_pixels, warmup=False)
    k = min(SERVING_CHECK_FILES, len(test))
    sample = np.sort(np.random.default_rng(seed).choice(len(test), size=k, replace=False))
    answers = inference.execute_batch([pool.paths[test[i]] for i in sample])
    served = np.asarray([a["values"] for a in answers], np.float32).reshape(-1, len(pool.classes))
    agree = sum(
        pool.classes.index(a["prediction"]) == pred[i] for a, i in zip(answers, sample, strict=True)
    )
    check = ServingCheck(
        what="test files classified through kto.inference vs the figures' cached features",
        files=k,
        same_prediction=int(agree),
        max_abs_probability_diff=float(np.abs(served - probs[sample]).max()) if k else 0.0,
    )
    ms = []
    for n in (1, 32):
        shape = (n, *inference.input_size, 3)
        batch = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
        inference.predict_arrays(batch)  # trace and warm up
        times = []
        for _ in range(5):
            start = time.perf_counter()
            inference.predict_arrays(batch)
            times.append((time.perf_counter() - start) * 1000 / n)
        ms.append(round(float(np.median(times)), 2))
    timing = Timing(
        ms_single_image=ms[0],
        ms_per_image_batch32=ms[1],
        intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        measured_with="kto.inference.Inference.predict_arrays",
    )
    return check, inference.sha256, timing
