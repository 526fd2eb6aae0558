"""Training stages: the head on cached features, optional fine-tuning, cross-validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.dataset import DEFAULT_CLASSES
from cats_dogs_other.train.evaluate import predict_batches
from cats_dogs_other.train.features import FeatureBank, extract_bank
from cats_dogs_other.train.model import Backbone, assemble, build_augmenter, build_head
from cats_dogs_other.train.novelty import nearest_similarity, reference_features
from cats_dogs_other.train.split import stratified_folds, stratified_split

History = dict[str, list[float]]
PARAM_KEYS = (
    *("backbone", "input_size", "seed", "epochs", "batch_size", "learning_rate", "dropout"),
    *("l2", "patience", "aug_passes", "fine_tune_layers", "fine_tune_epochs"),
    *("fine_tune_learning_rate", "val_fraction", "test_fraction", "cv_folds", "decision_rule"),
    *("novelty_gate", "novelty_passes", "max_id_accuracy_loss", "name", "version"),
)


@dataclass
class TrainConfig:
    """Every knob of a run; ``params()`` is what MLflow and the model card record."""

    data: Path
    out: Path
    weights: Path | None = None
    backbone: Backbone = "mobilenet_v2"
    input_size: int | None = 160
    """Square side in pixels; ``None`` = choose among ``size_candidates`` by measuring."""
    size_candidates: tuple[int, ...] = (160, 224)
    seed: int = 42
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.3
    l2: float = 1e-4
    patience: int = 10
    aug_passes: int = 4
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 5
    fine_tune_learning_rate: float = 1e-5
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    cv_folds: int = 5
    ood_dir: Path | None = None
    decision_rule: bool = True
    novelty_gate: bool = True
    novelty_passes: int = 4
    """Augmented copies of each training image kept as novelty-gate references (with the clean)."""
    max_id_accuracy_loss: float = 0.0
    classes: tuple[str, ...] = DEFAULT_CLASSES
    fallback_class: str = "Other"
    name: str = "cats-dogs-other"
    version: str = "1.0.0"
    max_pixels: int = 40_000_000
    progress: bool = True
    tracking_uri: str | None = None
    experiment: str = "cats-dogs-other"
    register_name: str | None = "cats-dogs-other"
    extra: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PARAM_KEYS} | {"classes": ",".join(self.classes)}


def _progress_callback(cfg: TrainConfig, desc: str) -> list[Any]:
    if not cfg.progress:
        return []
    from tqdm.keras import TqdmCallback

    return [TqdmCallback(verbose=0, desc=desc, leave=False)]


def _early_stopping(cfg: TrainConfig, has_val: bool) -> list[Any]:
    import keras

    if not has_val:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.patience, restore_best_weights=True
        )
    ]


def fit_head(
    bank: FeatureBank,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
) -> tuple[Any, History]:
    """Softmax head on the cached (clean + augmented) features of ``train_idx``."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    x, y = bank.training_set(train_idx, labels)
    head = build_head(x.shape[1], len(cfg.classes), dropout=cfg.dropout, l2=cfg.l2)
    head.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    has_val = len(val_idx) > 0
    fit = head.fit(
        x,
        y,
        validation_data=(bank.clean[val_idx], labels[val_idx]) if has_val else None,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=_early_stopping(cfg, has_val) + _progress_callback(cfg, "training head"),
    )
    return head, _plain(fit.history)


def fine_tune(
    backbone: Any,
    head: Any,
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
) -> History:
    """End to end on augmented images, top ``fine_tune_layers`` of the backbone unfrozen."""
    import keras

    from cats_dogs_other.train.model import unfreeze_top

    keras.utils.set_random_seed(cfg.seed)
    unfreeze_top(backbone, cfg.fine_tune_layers)
    inputs = keras.Input(shape=backbone.input_shape[1:])
    x = build_augmenter(cfg.seed)(inputs)
    model = keras.Model(inputs, head(backbone(x)))
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.fine_tune_learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    has_val = len(val_idx) > 0
    val = (images[val_idx].astype(np.float32), labels[val_idx]) if has_val else None
    fit = model.fit(
        images[train_idx].astype(np.float32),
        labels[train_idx],
        validation_data=val,
        epochs=cfg.fine_tune_epochs,
        batch_size=16,
        shuffle=True,
        verbose=0,
        callbacks=_early_stopping(cfg, has_val) + _progress_callback(cfg, "fine-tuning"),
    )
    backbone.trainable = False
    return _plain(fit.history)


def _plain(history: dict[str, Any]) -> History:
    return {k: [float(v) for v in values] for k, values in history.items()}


@dataclass
class CVResult:
    folds: int
    accuracies: list[float]
    oof_probs: np.ndarray
    """Out-of-fold probabilities: each image scored by the model that did not train on it."""
    oof_similarity: np.ndarray
    """Out-of-fold cosine similarity of each image to its nearest training image of its fold."""

    def summary(self, seed: int) -> dict[str, Any]:
        acc = np.asarray(self.accuracies)
        return {
            "folds": self.folds,
            "seed": seed,
            "accuracy_mean": round(float(acc.mean()), 4),
            "accuracy_std": round(float(acc.std()), 4),
            "fold_accuracies": [round(float(a), 4) for a in acc],
        }


def cross_validate(
    images: np.ndarray,
    labels: np.ndarray,
    bank: FeatureBank,
    cfg: TrainConfig,
    backbone_factory: Callable[[], Any],
) -> CVResult:
    """Stratified k-fold with the same pipeline: each fold's training part is itself split into
    train/validation (validation drives early stopping), then the fold is scored.
    """
    inner_val = cfg.val_fraction / (1 - cfg.test_fraction)
    oof = np.zeros((len(labels), len(cfg.classes)), dtype=np.float32)
    similarity = np.zeros(len(labels), dtype=np.float32)
    accuracies = []
    folds = stratified_folds(labels, cfg.cv_folds, seed=cfg.seed, class_names=cfg.classes)
    for k, (train_part, held_out) in enumerate(folds):
        inner = stratified_split(
            labels[train_part],
            val_fraction=inner_val,
            test_fraction=0.0,
            seed=cfg.seed + k,
            class_names=cfg.classes,
        )
        tr, va = train_part[inner.train], train_part[inner.val]
        head, _ = fit_head(bank, labels, tr, va, cfg)
        if cfg.fine_tune_layers > 0:
            backbone = backbone_factory()
            fine_tune(backbone, head, images, labels, tr, va, cfg)
            probs = predict_batches(assemble(backbone, head, cfg.name), images[held_out])
            reference = novelty_reference(backbone, images, tr, cfg)
            held_features = predict_batches(backbone, images[held_out])
        else:
            probs = np.asarray(head(bank.clean[held_out], training=False))
            reference = reference_features(bank, tr, cfg.novelty_passes)
            held_features = bank.clean[held_out]
        oof[held_out] = probs
        similarity[held_out] = nearest_similarity(held_features, reference)
        accuracies.append(float(np.mean(np.argmax(probs, axis=1) == labels[held_out])))
    return CVResult(cfg.cv_folds, accuracies, oof, similarity)


def novelty_reference(
    backbone: Any,
    images: np.ndarray,
    idx: np.ndarray,
    cfg: TrainConfig,
    bank: FeatureBank | None = None,
) -> np.ndarray:
    """Reference vectors for the gate; re-extracted when the backbone was fine-tuned."""
    if bank is None:
        passes = min(cfg.novelty_passes, cfg.aug_passes)
        bank = extract_bank(backbone, images[idx], passes=passes, seed=cfg.seed, progress=False)
        idx = np.arange(len(idx))
    return reference_features(bank, idx, cfg.novelty_passes)
