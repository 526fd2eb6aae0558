"""Fine-tuning the backbone's top block on cached activations (``tiny`` backbone, no weights)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cats_dogs_other.train import finetune
from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.data import Data
from cats_dogs_other.train.feature_cache import FeatureCache
from cats_dogs_other.train.features import predict_batches
from cats_dogs_other.train.finetune import (
    FIRST_LAYER,
    adapt_backbone,
    fine_tunes,
    make_extractor,
    mid_view,
    set_trainable,
    split_backbone,
    tuning_indices,
)
from cats_dogs_other.train.network import build_backbone
from cats_dogs_other.train.pipeline import feature_key
from cats_dogs_other.train.sources import Pool, build_pool
from cats_dogs_other.train.split import Split

from .conftest import write_ecotag, write_folders

SIDE = 32


@pytest.fixture
def backbone() -> object:
    import keras

    keras.utils.set_random_seed(0)
    return build_backbone("tiny", (SIDE, SIDE))


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE, 3)).astype(np.uint8)


def test_lower_then_top_is_the_backbone_and_shares_its_weights(backbone: object) -> None:
    lower, top = split_backbone(backbone, FIRST_LAYER["tiny"])
    x = _images().astype(np.float32)
    whole = np.asarray(backbone(x))  # type: ignore[operator]
    np.testing.assert_allclose(np.asarray(top(lower(x))), whole, rtol=1e-5, atol=1e-5)
    conv = top.get_layer("tiny_conv2")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 2.0, bias])  # training the top changes the saved backbone
    assert not np.allclose(np.asarray(backbone(x)), whole)  # type: ignore[operator]


def test_the_nested_mobilenet_layout_splits_too() -> None:
    """A backbone whose fine-tuned layers sit in a nested model after a Rescaling layer, as
    MobileNetV2's do (``block_16_expand`` inside ``mobilenetv2_1.00_224``)."""
    import keras

    inner_in = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, name="inner_a")(inner_in)
    b = keras.layers.Conv2D(5, 3, name="inner_b")(a)
    inner = keras.Model(inner_in, keras.layers.GlobalAveragePooling2D()(b), name="inner")
    image = keras.Input((8, 8, 3))
    outer = keras.Model(image, inner(keras.layers.Rescaling(0.5, name="scale")(image)))
    lower, top = split_backbone(outer, "inner_b")
    x = np.random.default_rng(1).random((3, 8, 8, 3)).astype(np.float32)
    assert lower(x).shape == (3, 6, 6, 4)
    np.testing.assert_allclose(np.asarray(top(lower(x))), np.asarray(outer(x)), atol=1e-5)


def test_batch_normalisation_stays_frozen() -> None:
    import keras

    entry = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1, name="c")(entry)
    x = keras.layers.BatchNormalization(name="bn")(x)
    top = keras.Model(entry, keras.layers.GlobalAveragePooling2D()(x))
    assert set_trainable(top) == 2 * 3 + 3  # the convolution's kernel and bias only
    assert not top.get_layer("bn").trainable and top.get_layer("c").trainable


def test_the_extractor_gives_the_frozen_features_and_the_activations_below(
    backbone: object,
) -> None:
    extract = make_extractor(backbone, FIRST_LAYER["tiny"], seed=0)
    images = _images()
    clean = extract(images, "clean")
    mids = extract(images, mid_view("clean"))
    flipped = extract(images, mid_view("flip"))
    whole = np.asarray(backbone(images.astype(np.float32)))  # type: ignore[operator]
    np.testing.assert_allclose(clean, whole, rtol=1e-5, atol=1e-5)
    _, top = split_backbone(backbone, FIRST_LAYER["tiny"])
    np.testing.assert_allclose(predict_batches(top, mids, 256), clean, rtol=1e-5, atol=1e-5)
    assert mids.ndim == 4 and not np.allclose(mids, flipped)


def _pool(tmp_path: Path, backbone: object) -> Pool:
    course = write_ecotag(tmp_path / "course", per_class=8)
    other = write_folders(tmp_path / "other", per_class=10, seed=1)
    views = ("clean", "flip", mid_view("clean"), mid_view("flip"))
    return build_pool(
        [course, other],
        side=SIDE,
        views=views,
        extract=make_extractor(backbone, FIRST_LAYER["tiny"], seed=0),
        cache=FeatureCache(tmp_path / "cache", "k"),
        progress=False,
    )


def _halves(pool: Pool) -> Split:
    idx = np.arange(len(pool))
    return Split(train=idx[::2], val=idx[1::2], test=np.zeros(0, np.int64))


def _cfg(tmp_path: Path, **kw: object) -> TrainConfig:
    base = TrainConfig(
        data=tmp_path, out=tmp_path / "out", backbone="tiny", input_size=SIDE, progress=False
    )
    return replace(base, learning_rate=0.01, fine_tune_learning_rate=0.01, **kw)  # type: ignore[arg-type]


def test_fine_tuning_leaves_out_the_cross_validated_source(
    tmp_path: Path, backbone: object
) -> None:
    pool = _pool(tmp_path, backbone)
    split = _halves(pool)
    train, val = tuning_indices(Data(_cfg(tmp_path), pool, split))
    assert set(pool.sources[train]) == set(pool.sources[val]) == {"other"}
    train, _ = tuning_indices(Data(_cfg(tmp_path, cv_folds=0), pool, split))
    assert set(pool.sources[train]) == {"course", "other"}


def test_adapting_the_backbone_replaces_the_features_it_changed(
    tmp_path: Path, backbone: object
) -> None:
    pool = _pool(tmp_path, backbone)
    frozen = {v: pool.features[v].copy() for v in ("clean", "flip")}
    before = [w.copy() for w in backbone.get_weights()]  # type: ignore[attr-defined]
    cfg = _cfg(tmp_path, fine_tune_epochs=4, fine_tune_patience=4, epochs=10)
    adapted, report = adapt_backbone(backbone, Data(cfg, pool, _halves(pool)))
    assert report is not None and report.trained_on == ["other"] and report.epochs_run >= 1
    assert not any(v.startswith("mid.") for v in adapted.features)
    changed = any(
        not np.array_equal(a, b)
        for a, b in zip(before, backbone.get_weights(), strict=True)  # type: ignore[attr-defined]
    )
    assert changed == report.kept
    if report.kept:  # the pool's features are the fine-tuned backbone's, for every view
        assert report.val_loss_best is not None and report.val_loss_frozen is not None
        assert report.val_loss_best < report.val_loss_frozen
        assert not np.allclose(adapted.features["clean"], frozen["clean"])
        lower, top = split_backbone(backbone, FIRST_LAYER["tiny"])
        x = _images(2).astype(np.float32)
        np.testing.assert_allclose(
            np.asarray(top(lower(x))),
            np.asarray(backbone(x)),  # type: ignore[operator]
            atol=1e-5,
        )
    else:
        np.testing.assert_array_equal(adapted.features["clean"], frozen["clean"])


def test_off_by_flag_or_for_lack_of_a_block(tmp_path: Path, backbone: object) -> None:
    assert fine_tunes(_cfg(tmp_path))
    assert not fine_tunes(_cfg(tmp_path, fine_tune=False))
    assert not fine_tunes(_cfg(tmp_path, fine_tune_epochs=0))
    pool = _pool(tmp_path, backbone)
    off = _cfg(tmp_path, fine_tune=False)
    adapted, report = adapt_backbone(backbone, Data(off, pool, _halves(pool)))
    assert report is None and set(adapted.features) == {"clean", "flip"}


def test_the_feature_cache_key_names_the_fine_tuned_layer(
    tmp_path: Path, backbone: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cached ``mid.*`` views hold one layer's input: another first layer must not read them."""
    tuned = feature_key(backbone, _cfg(tmp_path))
    assert tuned == feature_key(backbone, _cfg(tmp_path))
    assert tuned != feature_key(backbone, _cfg(tmp_path, fine_tune=False))
    monkeypatch.setitem(finetune.FIRST_LAYER, "tiny", "tiny_conv1")
    assert tuned != feature_key(backbone, _cfg(tmp_path))
