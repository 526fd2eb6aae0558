"""Training stages on cached features: heads, their selection, cross-validation on one source."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from kto.inference import DEFAULT_MAX_PIXELS

from cats_dogs_other.train.dataset import DEFAULT_CLASSES
from cats_dogs_other.train.model import Backbone, build_head
from cats_dogs_other.train.split import stratified_folds

History = dict[str, list[float]]
Weighting = Literal["none", "class", "stratum"]
WEIGHTINGS: tuple[Weighting, ...] = ("none", "class", "stratum")
PARAM_KEYS = (
    *("backbone", "input_size", "seed", "epochs", "batch_size", "learning_rate", "dropout"),
    *("l2", "patience", "aug_passes", "val_fraction", "calibration_fraction", "test_fraction"),
    *("cv_folds", "hidden_candidates", "weighting_candidates", "tta_candidates"),
    *("confidence_rule", "refit", "min_gain", "name", "version"),
)


@dataclass
class TrainConfig:
    """Every knob of a run; ``params()`` is what MLflow and the model card record."""

    data: tuple[Path, ...] | Path
    out: Path
    weights: Path | None = None
    backbone: Backbone = "mobilenet_v2"
    input_size: int = 224
    seed: int = 42
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 1e-3
    dropout: float = 0.3
    l2: float = 1e-4
    patience: int = 8
    aug_passes: int = 0
    """Randomly augmented copies (rotation, zoom, shift, light) besides the mirrored one."""
    val_fraction: float = 0.1
    calibration_fraction: float = 0.1
    test_fraction: float = 0.2
    cv_folds: int = 5
    cv_source: str | None = None
    """Source whose images are cross-validated (default: the first ``--data``)."""
    hidden_candidates: tuple[int, ...] = (0, 256)
    """Head shapes tried on the validation split: 0 = linear softmax, N = one ReLU layer."""
    weighting_candidates: tuple[Weighting, ...] = ("none", "class")
    tta_candidates: tuple[bool, ...] = (False, True)
    confidence_rule: bool = True
    """Try a ``min_confidence`` threshold (-> Other) on the calibration split."""
    refit: bool = True
    """Train the chosen head again on train + validation + calibration before saving."""
    min_gain: float = 0.01
    """A costlier choice (bigger head, mirror pass, rule) must beat the simpler one by this much
    macro recall on held-out data (about two validation images of the smallest class), so
    noise alone never buys latency."""
    cache_dir: Path | None = None
    ood_dir: Path | None = None
    classes: tuple[str, ...] = DEFAULT_CLASSES
    fallback_class: str = "Other"
    name: str = "cats-dogs-other"
    version: str = "1.0.0"
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress: bool = True
    tracking_uri: str | None = None
    experiment: str = "cats-dogs-other"
    register_name: str | None = "cats-dogs-other"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def data_dirs(self) -> tuple[Path, ...]:
        return (Path(self.data),) if isinstance(self.data, str | Path) else tuple(self.data)

    @property
    def views(self) -> tuple[str, ...]:
        return ("clean", "flip", *(f"aug{k}" for k in range(1, self.aug_passes + 1)))

    def params(self) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in PARAM_KEYS}
        values = {
            k: ",".join(map(str, v)) if isinstance(v, tuple) else v for k, v in values.items()
        }
        return values | {
            "classes": ",".join(self.classes),
            "data": ",".join(map(str, self.data_dirs)),
        }


@dataclass(frozen=True)
class HeadChoice:
    hidden: int
    weighting: Weighting

    @property
    def label(self) -> str:
        shape = "linear" if self.hidden == 0 else f"MLP {self.hidden}"
        return f"{shape}, weighting {self.weighting}"


def sample_weights(labels: np.ndarray, strata: np.ndarray, how: Weighting) -> np.ndarray:
    """Per-image weights: each class (or source x class stratum) weighs the same in total."""
    if how == "none":
        return np.ones(len(labels), np.float32)
    keys = labels if how == "class" else np.char.add(strata.astype(str), labels.astype(str))
    values, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    weights = len(labels) / (len(values) * counts[inverse])
    return weights.astype(np.float32)


def _progress_callback(cfg: TrainConfig, desc: str) -> list[Any]:
    if not cfg.progress:
        return []
    from tqdm.keras import TqdmCallback

    return [TqdmCallback(verbose=0, desc=desc, leave=False)]


def fit_head(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    strata: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    choice: HeadChoice,
    desc: str = "training head",
) -> tuple[Any, History]:
    """Head on the cached features of every view of ``train_idx``; early stopping on the clean
    features of ``val_idx``."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    x = np.concatenate([features[v][train_idx] for v in cfg.views])
    y = np.tile(labels[train_idx], len(cfg.views))
    w = np.tile(
        sample_weights(labels[train_idx], strata[train_idx], choice.weighting), len(cfg.views)
    )
    head = build_head(
        x.shape[1], len(cfg.classes), dropout=cfg.dropout, l2=cfg.l2, hidden=choice.hidden
    )
    head.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=16,  # fewer Python round trips per epoch: 2-3x faster on 2 cores
    )
    has_val = len(val_idx) > 0
    stop = (
        [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.patience, restore_best_weights=True
            )
        ]
        if has_val
        else []
    )
    fit = head.fit(
        x,
        y,
        sample_weight=w,
        validation_data=(features["clean"][val_idx], labels[val_idx]) if has_val else None,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=stop + _progress_callback(cfg, desc),
    )
    return head, {k: [float(v) for v in values] for k, values in fit.history.items()}


def head_probs(
    head: Any, features: dict[str, np.ndarray], idx: np.ndarray, tta: bool
) -> np.ndarray:
    """What the assembled model answers, from cached features: mirror-averaged when ``tta``."""
    probs = np.asarray(head(features["clean"][idx], training=False))
    if tta:
        probs = (probs + np.asarray(head(features["flip"][idx], training=False))) / 2
    return probs


def decide(probs: np.ndarray, threshold: float | None, fallback: int) -> np.ndarray:
    """``min_confidence``, exactly as the wheel applies it."""
    pred = np.argmax(probs, axis=1)
    return pred if threshold is None else np.where(probs.max(axis=1) < threshold, fallback, pred)


def macro_recall(y_true: np.ndarray, y_pred: np.ndarray, strata: np.ndarray | None = None) -> float:
    """Mean recall over classes (or over source x class strata when ``strata`` is given): a
    class of 40 held-out photos weighs as much as one of 200, so a choice cannot trade Other
    for pet photos unnoticed. Choices use classes: a 6-photo stratum would make one image
    worth several points and the choice noise."""
    keys = (
        y_true.astype(str)
        if strata is None
        else np.char.add(strata.astype(str), y_true.astype(str))
    )
    recalls = [float(np.mean(y_pred[keys == k] == y_true[keys == k])) for k in np.unique(keys)]
    return float(np.mean(recalls)) if recalls else 0.0


def choose_threshold(
    probs: np.ndarray,
    labels: np.ndarray,
    strata: np.ndarray | None,
    fallback: int,
    min_gain: float,
) -> tuple[float | None, dict[str, Any]]:
    """The ``min_confidence`` maximising macro recall on the calibration split, kept only when it
    beats no threshold by ``min_gain``."""
    base = macro_recall(labels, decide(probs, None, fallback), strata)
    top = np.unique(np.round(probs.max(axis=1), 4))
    candidates = np.unique(np.concatenate([(top[:-1] + top[1:]) / 2, [0.5, 0.6, 0.7, 0.8, 0.9]]))
    scored = [
        (macro_recall(labels, decide(probs, float(t), fallback), strata), float(t))
        for t in candidates
    ]
    best_score, best_t = max(scored, key=lambda st: (st[0], -st[1])) if scored else (base, None)
    chosen = round(best_t, 4) if best_t is not None and best_score >= base + min_gain else None
    return chosen, {
        "macro_recall_without": round(base, 4),
        "best_threshold": None if best_t is None else round(best_t, 4),
        "macro_recall_with_best": round(best_score, 4),
        "chosen": chosen,
        "n": len(labels),
    }


@dataclass
class CVResult:
    source: str
    folds: int
    accuracies: list[float]
    correct: int
    n: int
    per_class_correct: dict[str, list[int]]

    def summary(self, seed: int) -> dict[str, Any]:
        from cats_dogs_other.train.stats import proportion

        acc = np.asarray(self.accuracies)
        return {
            "source": self.source,
            "folds": self.folds,
            "seed": seed,
            "accuracy_mean": round(float(acc.mean()), 4),
            "accuracy_std": round(float(acc.std()), 4),
            "fold_accuracies": [round(float(a), 4) for a in acc],
            "pooled": proportion(self.correct, self.n),
            "per_class_recall": {
                c: proportion(k, n) for c, (k, n) in self.per_class_correct.items()
            },
        }


def cross_validate(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    strata: np.ndarray,
    cv_idx: np.ndarray,
    extra_train: np.ndarray,
    cfg: TrainConfig,
    choice: HeadChoice,
    tta: bool,
    threshold: float | None,
    epochs: int,
) -> CVResult:
    """Stratified k-fold over ``cv_idx`` (one source), the final model's recipe in each fold: the
    chosen head for ``epochs`` on the fold's training part plus ``extra_train`` (the other
    sources' non-test images), then the held-out fold answered with the mirror pass and rule."""
    fallback = cfg.classes.index(cfg.fallback_class)
    folds = stratified_folds(labels[cv_idx], cfg.cv_folds, seed=cfg.seed, class_names=cfg.classes)
    accuracies, correct = [], 0
    per_class = {c: [0, 0] for c in cfg.classes}
    fixed = replace(cfg, epochs=epochs)
    none = np.zeros(0, np.int64)
    for k, (train_part, held_part) in enumerate(folds):
        tr = np.concatenate([cv_idx[train_part], extra_train])
        head, _ = fit_head(
            features, labels, strata, tr, none, fixed, choice, desc=f"CV fold {k + 1}"
        )
        held = cv_idx[held_part]
        pred = decide(head_probs(head, features, held, tta), threshold, fallback)
        hits = pred == labels[held]
        accuracies.append(float(hits.mean()))
        correct += int(hits.sum())
        for i, c in enumerate(cfg.classes):
            per_class[c][0] += int(hits[labels[held] == i].sum())
            per_class[c][1] += int((labels[held] == i).sum())
    return CVResult(
        str(strata[cv_idx[0]]), cfg.cv_folds, accuracies, correct, len(cv_idx), per_class
    )
