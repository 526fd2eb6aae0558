"""Fine-tuning the backbone's last block on cached activations: a full MobileNetV2 pass per
epoch does not fit ``make train``'s 15 minutes on 2 cores, so the frozen part's output (the
``mid.*`` views) is cached and an epoch costs the top block only (~15% of the backbone). Batch
normalisation stays frozen (a few thousand images would make its statistics noisier); the head
starts from a linear probe, whose small gradients do not wreck the pretrained block."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.data import Data
from cats_dogs_other.train.features import Extractor, predict_batches
from cats_dogs_other.train.features import make_extractor as pooled_extractor
from cats_dogs_other.train.heads import HeadChoice, History, fit, fit_head
from cats_dogs_other.train.results import FineTuneReport
from cats_dogs_other.train.sources import Pool

MID_PREFIX = "mid."  # cache views holding the activations that enter the fine-tuned block
FIRST_LAYER = {"mobilenet_v2": "block_16_expand", "tiny": "tiny_conv2"}
"""The first layer fine-tuned, per backbone: everything from it to the pooled features trains."""
PROBE = "linear probe (frozen features)"
Idx = tuple[np.ndarray, np.ndarray]  # (training, validation) indices

log = logging.getLogger(__name__)


def mid_view(view: str) -> str:
    return f"{MID_PREFIX}{view}"


def fine_tunes(cfg: TrainConfig) -> bool:
    return cfg.fine_tune and cfg.fine_tune_epochs > 0 and cfg.backbone in FIRST_LAYER


def split_backbone(backbone: Any, first_layer: str) -> tuple[Any, Any]:
    """(lower, top): raw image -> activations entering ``first_layer``, and those activations ->
    the backbone's features; both share the backbone's layers (and weights)."""
    import keras

    nested = [m for m in backbone.layers if isinstance(m, keras.Model)]
    owner = next(
        (m for m in (backbone, *nested) if first_layer in [x.name for x in m.layers]), None
    )
    if owner is None:
        raise ValueError(f"layer {first_layer!r} not found in {backbone.name}")
    entry = owner.get_layer(first_layer).input
    top = keras.Model(entry, owner.output, name="fine_tuned_top")
    if owner is backbone:
        return keras.Model(backbone.input, entry, name="frozen_lower"), top
    # the layers before the nested model (Rescaling) form a chain: re-applied
    image = x = keras.Input(shape=backbone.input_shape[1:], name="image")
    for layer in backbone.layers[1 : backbone.layers.index(owner)]:
        x = layer(x)
    return keras.Model(image, keras.Model(owner.input, entry)(x), name="frozen_lower"), top


def set_trainable(top: Any) -> int:
    """Every layer of ``top`` trains except batch normalisation; returns the trainable count."""
    import keras

    for layer in top.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    return int(sum(int(np.prod(w.shape)) for w in top.trainable_weights))


def make_extractor(backbone: Any, first_layer: str, seed: int) -> Extractor:
    """Like :func:`features.make_extractor`, with the ``mid.<view>`` views as well: one pass of
    the frozen lower part gives both (its output, and the top's features of it)."""
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
        return memo[base] if view.startswith(MID_PREFIX) else predict_batches(top, memo[base], 256)

    return extract


def tuning_indices(data: Data) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation splits without the cross-validated source (when there is a
    cross-validation): its held-out images stay unseen in every fold."""
    cfg, pool, split = data.cfg, data.pool, data.split
    keep = np.ones(len(pool), bool)
    if cfg.cv_folds:
        keep = pool.sources != (cfg.cv_source or pool.source_names[0])
    return split.train[keep[split.train]], split.val[keep[split.val]]


def fine_tune(
    top: Any, probe: Any, mids: dict[str, np.ndarray], y: np.ndarray, idx: Idx, cfg: TrainConfig
) -> History:
    """``top`` and a copy of the linear ``probe`` trained together on every view of the
    training indices, early stopping on the validation ones (``idx``)."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    dense = keras.layers.Dense(
        int(probe.output_shape[-1]), activation="softmax", name="fine_tune_head"
    )
    x = keras.layers.Dropout(cfg.dropout, name="fine_tune_dropout")(top.output)
    model = keras.Model(top.input, dense(x), name="fine_tune")
    dense.set_weights(probe.get_layer("probabilities").get_weights())
    rate, decay = cfg.fine_tune_learning_rate, cfg.fine_tune_weight_decay
    how = (keras.optimizers.AdamW(rate, weight_decay=decay), 8, cfg.fine_tune_patience)
    train, val = idx
    xs = np.concatenate([mids[v][train] for v in cfg.views]).astype(np.float32)
    ys = np.tile(y[train], len(cfg.views))
    held = (mids["clean"][val].astype(np.float32), y[val]) if len(val) else None
    schedule = {"epochs": cfg.fine_tune_epochs, "batch_size": 64}
    return fit(model, how, xs, ys, held, "fine-tuning the top block", cfg.progress, **schedule)


def adapt_backbone(backbone: Any, data: Data) -> tuple[Pool, FineTuneReport | None]:
    """Fine-tune the backbone's top block in place, kept only when its validation loss beats the
    linear probe's on the frozen features (else the weights are put back); the ``mid.*`` views
    leave the pool either way."""
    cfg, pool = data.cfg, data.pool
    mids = {v: pool.features.pop(mid_view(v)) for v in cfg.views if mid_view(v) in pool.features}
    if not fine_tunes(cfg) or len(mids) != len(cfg.views):
        return pool, None
    train, val = tuning_indices(data)
    if not len(train) or not len(val):
        log.info("fine-tuning skipped: no training or validation image outside the CV source")
        return pool, None
    started = time.perf_counter()
    _, top = split_backbone(backbone, FIRST_LAYER[cfg.backbone])
    frozen = top.get_weights()
    probe, probed = fit_head(pool, train, val, cfg, HeadChoice(0, "none"), PROBE)
    trainable = set_trainable(top)
    history = fine_tune(top, probe, mids, pool.labels, (train, val), cfg)
    for layer in top.layers:
        layer.trainable = False
    frozen_loss, best = min(probed["val_loss"]), int(np.argmin(history["val_loss"]))
    if kept := history["val_loss"][best] < frozen_loss:
        tuned = {v: predict_batches(top, mids[v], 256) for v in cfg.views}
        pool = replace(pool, features=pool.features | tuned)
    else:
        top.set_weights(frozen)
    report = FineTuneReport(
        first_layer=FIRST_LAYER[cfg.backbone],
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
