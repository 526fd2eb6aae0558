"""Fine-tuning the backbone's last block(s) on cached activations.

A full forward and backward pass of MobileNetV2 over the training images each epoch does not fit
the 15-minute budget of ``make train`` on 2 CPU cores. Everything below the fine-tuned block is
still frozen, so its output for a given image (and view) never changes: it is computed once, with
the frozen features, and cached like them (the ``mid.<view>`` views, 7x7x160 floats for
MobileNetV2's ``block_16``). An epoch then costs the top block only (``block_16`` + ``Conv_1`` +
pooling: about 15% of the backbone's work), forward and backward.

The top is a view onto the backbone's own layers (a Keras submodel shares their weights), so
training it changes the backbone that is saved and served: there is no second copy to keep in
step. Batch normalisation stays frozen (inference statistics, no update): a few thousand images
would only make its running statistics noisier. The head starts from a linear probe on the
frozen features (then both train together at a small learning rate with weight decay): a random
head's large early gradients would otherwise wreck the pretrained block before it learns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cats_dogs_other.train.results import FineTuneReport

if TYPE_CHECKING:
    from cats_dogs_other.train.config import TrainConfig
    from cats_dogs_other.train.sources import Pool
    from cats_dogs_other.train.split import Split

MID_PREFIX = "mid."
"""Cache views holding the activations that enter the fine-tuned block."""
FIRST_LAYER = {"mobilenet_v2": "block_16_expand", "tiny": "tiny_conv2"}
"""The first layer fine-tuned, per backbone: everything from it to the pooled features trains."""
FINE_TUNE_BATCH = 64

log = logging.getLogger(__name__)


def mid_view(view: str) -> str:
    return f"{MID_PREFIX}{view}"


def _owner(backbone: Any, name: str) -> Any:
    """The (possibly nested) model whose layers include ``name``."""
    import keras

    if any(layer.name == name for layer in backbone.layers):
        return backbone
    for layer in backbone.layers:
        if isinstance(layer, keras.Model) and any(sub.name == name for sub in layer.layers):
            return layer
    raise ValueError(f"layer {name!r} not found in {backbone.name}")


def split_backbone(backbone: Any, first_layer: str) -> tuple[Any, Any]:
    """(lower, top): raw image -> activations entering ``first_layer``, and those activations ->
    the backbone's features. Both share the backbone's layers (and weights)."""
    import keras

    owner = _owner(backbone, first_layer)
    entry = owner.get_layer(first_layer).input
    top = keras.Model(entry, owner.output, name="fine_tuned_top")
    if owner is backbone:
        lower = keras.Model(backbone.input, entry, name="frozen_lower")
    else:
        # the backbone's layers before the nested model (Rescaling) form a chain: re-applied
        image = keras.Input(shape=backbone.input_shape[1:], name="image")
        x = image
        for layer in backbone.layers[1 : backbone.layers.index(owner)]:
            x = layer(x)
        lower = keras.Model(image, keras.Model(owner.input, entry)(x), name="frozen_lower")
    return lower, top


def set_trainable(top: Any) -> int:
    """Every layer of ``top`` trains except batch normalisation; returns the trainable count."""
    import keras

    for layer in top.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    return int(sum(int(np.prod(w.shape)) for w in top.trainable_weights))


def freeze(top: Any) -> None:
    for layer in top.layers:
        layer.trainable = False


def top_features(top: Any, mids: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The (fine-tuned) backbone features of cached activations."""
    from cats_dogs_other.train.features import forward_fn

    forward = forward_fn(top)
    out = [
        np.asarray(forward(np.asarray(mids[i : i + batch_size], np.float32)))
        for i in range(0, len(mids), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fine_tune(
    top: Any,
    probe: Any,
    mids: dict[str, np.ndarray],
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    views: Sequence[str],
    epochs: int,
    learning_rate: float,
    weight_decay: float,
    patience: int,
    dropout: float,
    batch_size: int,
    seed: int,
    progress: bool = False,
) -> dict[str, list[float]]:
    """Train ``top`` and a copy of the linear ``probe`` head together on every view of
    ``train_idx``; early stopping on the clean view of ``val_idx`` (best weights restored)."""
    import keras

    keras.utils.set_random_seed(seed)
    n_classes = int(probe.output_shape[-1])
    dense = keras.layers.Dense(n_classes, activation="softmax", name="fine_tune_head")
    x = keras.layers.Dropout(dropout, name="fine_tune_dropout")(top.output)
    model = keras.Model(top.input, dense(x), name="fine_tune")
    dense.set_weights(probe.get_layer("probabilities").get_weights())
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=8,
    )
    xs = np.concatenate([mids[v][train_idx] for v in views]).astype(np.float32)
    ys = np.tile(labels[train_idx], len(views))
    callbacks: list[Any] = []
    has_val = len(val_idx) > 0
    val = (mids["clean"][val_idx].astype(np.float32), labels[val_idx]) if has_val else None
    if has_val:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="fine-tuning the top block", leave=False))
    fit = model.fit(
        xs,
        ys,
        validation_data=val,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    return {k: [float(v) for v in values] for k, values in fit.history.items()}


def make_extractor(backbone: Any, first_layer: str, seed: int) -> Any:
    """Like :func:`features.make_extractor`, with the ``mid.<view>`` views as well: one pass of
    the frozen lower part gives both (its output, and the top's features of it)."""
    from cats_dogs_other.train.features import make_extractor as pooled_extractor

    lower, top = split_backbone(backbone, first_layer)
    lower_extract = pooled_extractor(lower, seed)
    batch: list[np.ndarray] = []  # the batch the memo is for (held, so its id is not reused)
    memo: dict[str, np.ndarray] = {}

    def extract(images: np.ndarray, view: str) -> np.ndarray:
        base = view.removeprefix(MID_PREFIX)
        if not batch or batch[0] is not images:
            batch[:] = [images]
            memo.clear()  # one batch at a time: all its views, then the next batch
        if base not in memo:
            memo[base] = lower_extract(images, base)
        mids = memo[base]
        if view.startswith(MID_PREFIX):
            return mids
        return top_features(top, mids)

    return extract


def fine_tunes(cfg: TrainConfig) -> bool:
    """Whether this run fine-tunes (asked for, and the backbone has a block to fine-tune)."""
    return cfg.fine_tune and cfg.fine_tune_epochs > 0 and cfg.backbone in FIRST_LAYER


def tuning_indices(pool: Pool, split: Split, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) of the fine-tuning: the training and validation splits, without the
    cross-validated source when there is a cross-validation. Its images are then never seen by
    the fine-tuned block, so every fold's held-out images stay unseen (each fold only trains its
    head); the other sources may be in every training fold."""
    keep = np.ones(len(pool), bool)
    if cfg.cv_folds:
        keep = pool.sources != (cfg.cv_source or pool.source_names[0])
    return split.train[keep[split.train]], split.val[keep[split.val]]


def adapt_backbone(
    backbone: Any, pool: Pool, split: Split, cfg: TrainConfig
) -> tuple[Pool, FineTuneReport | None]:
    """Fine-tune the backbone's top block in place, and the pool's features recomputed by it.

    The ``mid.*`` views leave the pool either way. The fine-tuned weights are kept only when
    their validation loss beats the linear probe's on the frozen features; otherwise the
    backbone's weights are put back and the features stay the frozen ones.
    """
    import time

    from cats_dogs_other.train.heads import HeadChoice, fit_head

    mids = {v: pool.features.pop(mid_view(v)) for v in cfg.views if mid_view(v) in pool.features}
    if not fine_tunes(cfg) or len(mids) != len(cfg.views):
        return pool, None
    train, val = tuning_indices(pool, split, cfg)
    if not len(train) or not len(val):
        log.info("fine-tuning skipped: no training or validation image outside the CV source")
        return pool, None
    started = time.perf_counter()
    first = FIRST_LAYER[cfg.backbone]
    _, top = split_backbone(backbone, first)
    frozen = top.get_weights()
    probe, probe_history = fit_head(
        pool.features, pool.labels, pool.sources, train, val, cfg, HeadChoice(0, "none"),
        desc="linear probe (frozen features)",
    )  # fmt: skip
    trainable = set_trainable(top)
    history = fine_tune(
        top,
        probe,
        mids,
        pool.labels,
        train,
        val,
        views=cfg.views,
        epochs=cfg.fine_tune_epochs,
        learning_rate=cfg.fine_tune_learning_rate,
        weight_decay=cfg.fine_tune_weight_decay,
        patience=cfg.fine_tune_patience,
        dropout=cfg.dropout,
        batch_size=FINE_TUNE_BATCH,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    freeze(top)
    frozen_loss = min(probe_history["val_loss"])
    best = int(np.argmin(history["val_loss"]))
    kept = history["val_loss"][best] < frozen_loss
    if kept:
        features = {v: top_features(top, mids[v]) for v in cfg.views}
        pool = replace(pool, features=pool.features | features)
    else:
        top.set_weights(frozen)
    report = FineTuneReport(
        first_layer=first,
        trained_on=sorted({str(s) for s in pool.sources[train]}),
        images=len(train),
        views=list(cfg.views),
        trainable_weights=trainable,
        epochs_run=len(history["val_loss"]),
        best_epoch=best + 1,
        learning_rate=cfg.fine_tune_learning_rate,
        weight_decay=cfg.fine_tune_weight_decay,
        val_loss_frozen=round(frozen_loss, 4),
        val_loss_best=round(history["val_loss"][best], 4),
        kept=kept,
        seconds=round(time.perf_counter() - started, 1),
        history=history,
    )
    log.info("fine-tuning: %s", report)
    return pool, report
