"""The choices made on held-out data: weighting, macro recall, the confidence rule, the mirror."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cats_dogs_other.train.train import choose_threshold, decide, macro_recall, sample_weights

OTHER = 2


def test_macro_recall_weighs_every_source_and_class_alike() -> None:
    y = np.array([1] * 9 + [1])
    strata = np.array(["pets"] * 9 + ["imagenet"])
    pred = np.array([1] * 9 + [2])  # the one ImageNet dog missed
    assert np.mean(pred == y) == 0.9
    assert macro_recall(y, pred, strata) == pytest.approx(0.5)


def test_sample_weights_balance_classes_or_strata() -> None:
    labels = np.array([0, 0, 0, 1])
    strata = np.array(["a", "a", "b", "b"])
    assert sample_weights(labels, strata, "none").tolist() == [1, 1, 1, 1]
    by_class = sample_weights(labels, strata, "class")
    assert by_class[:3].sum() == pytest.approx(by_class[3])
    by_stratum = sample_weights(labels, strata, "stratum")  # a0 (2), b0 (1), b1 (1)
    assert by_stratum[:2].sum() == pytest.approx(by_stratum[2]) == pytest.approx(by_stratum[3])


def test_threshold_is_kept_only_when_it_pays() -> None:
    probs = np.array([[0.95, 0.03, 0.02], [0.05, 0.9, 0.05], [0.45, 0.4, 0.15], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, OTHER, OTHER])  # the unsure one is really Other
    strata = np.array(["s"] * 4)
    t, details = choose_threshold(probs, labels, strata, OTHER, min_gain=0.005)
    assert t is not None and 0.45 < t <= 0.8
    assert decide(probs, t, OTHER).tolist() == [0, 1, OTHER, OTHER]
    assert details["macro_recall_with_best"] == 1.0 > details["macro_recall_without"]
    sure = np.array([[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.1, 0.1, 0.8]])
    t, details = choose_threshold(sure, np.array([0, 1, 2]), np.array(["s"] * 3), OTHER, 0.005)
    assert t is None and details["chosen"] is None


def test_mirror_layers_flip_left_right_and_average() -> None:
    import keras

    from cats_dogs_other.train.model import assemble, build_head, mirror

    inputs = keras.Input(shape=(4, 5, 3))
    flipper = keras.Model(inputs, mirror(inputs, 5))
    image = np.random.default_rng(0).uniform(0, 255, (2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(flipper(image)), image[:, :, ::-1], atol=1e-4)
    pooled = keras.Sequential([keras.Input(shape=(4, 5, 3)), keras.layers.Flatten()])
    head = build_head(60, 3, dropout=0.0, l2=0.0)
    both = np.asarray(assemble(pooled, head, "m", tta=True)(image))
    plain = np.asarray(head(image.reshape(2, -1)))
    mirrored = np.asarray(head(image[:, :, ::-1].reshape(2, -1)))
    np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-5)


def test_collect_from_python_packages(tmp_path: Path) -> None:
    """The bundled pictures only (no apt): known cats are kept apart from the OOD set."""
    from cats_dogs_other.train.ood import collect, load_ood

    dest = tmp_path / "ood"
    manifest = collect(dest, debian=False)
    files = [e["file"] for e in manifest["images"]]
    assert len(files) >= 20 and "people__matplotlib__grace_hopper.png" in files
    assert not any("chelsea" in f or "cat" in f.split("__")[2] for f in files)
    assert [e["expected"] for e in manifest["in_distribution"]] == ["Cat"]
    assert all(e["source"].startswith("python:") for e in manifest["images"])
    ood = load_ood(dest, (24, 24), seed=1)
    assert ood.images.shape == (len(files), 24, 24, 3)
    assert ood.sha256 == manifest["sha256"]
    # a folder it did not make is never wiped
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not made by this command"):
        collect(tmp_path / "mine", debian=False)
    assert (tmp_path / "mine" / "holiday.jpg").read_bytes() == b"precious"
