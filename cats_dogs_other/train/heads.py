"""Heads trained on cached backbone features, and what they answer from those features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cats_dogs_other.train.config import TrainConfig, Weighting
from cats_dogs_other.train.network import build_head
from cats_dogs_other.train.sources import Pool

History = dict[str, list[float]]
How = tuple[Any, int, int]
"""(optimizer, steps per call, early-stopping patience)"""
NONE = np.zeros(0, np.int64)  # no validation images: no early stopping


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
    return (len(labels) / (len(values) * counts[inverse])).astype(np.float32)


def fit(
    model: Any, how: How, x: Any, y: Any, val: Any, desc: str, progress: bool, **kw: Any
) -> History:
    """Compiled and fitted, early-stopping on ``val`` when there is one (best weights restored)."""
    import keras

    optimizer, steps, patience = how
    loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, steps_per_execution=steps)
    stop = keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
    calls: list[Any] = [] if val is None else [stop]
    if progress:
        from tqdm.keras import TqdmCallback

        calls.append(TqdmCallback(verbose=0, desc=desc, leave=False))
    fitted = model.fit(x, y, validation_data=val, shuffle=True, verbose=0, callbacks=calls, **kw)
    return {k: [float(v) for v in values] for k, values in fitted.history.items()}


def fit_head(
    pool: Pool, train: np.ndarray, val: np.ndarray, cfg: TrainConfig, choice: HeadChoice, desc: str
) -> tuple[Any, History]:
    """A head on the cached features of every view of ``train``, early-stopping on clean ``val``."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    n, labels = len(cfg.views), pool.labels
    x = np.concatenate([pool.features[v][train] for v in cfg.views])
    weights = sample_weights(labels[train], pool.sources[train], choice.weighting)
    head = build_head(
        x.shape[1], len(cfg.classes), dropout=cfg.dropout, l2=cfg.l2, hidden=choice.hidden
    )
    held = (pool.features["clean"][val], labels[val]) if len(val) else None
    y, w = np.tile(labels[train], n), np.tile(weights, n)
    schedule = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "sample_weight": w}
    # 16 steps per call: fewer Python round trips per epoch, 2-3x faster on 2 cores
    how = (keras.optimizers.Adam(cfg.learning_rate), 16, cfg.patience)
    return head, fit(head, how, x, y, held, desc, cfg.progress, **schedule)


def head_probs(head: Any, features: dict[str, np.ndarray], idx: Any, tta: bool) -> np.ndarray:
    """What the assembled model answers, from cached features: mirror-averaged when ``tta``."""
    probs = np.asarray(head(features["clean"][idx], training=False))
    if tta:
        probs = (probs + np.asarray(head(features["flip"][idx], training=False))) / 2
    return probs
