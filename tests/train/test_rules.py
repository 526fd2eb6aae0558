"""The rules that send unfamiliar images to "Other": calibration and the in-model gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cats_dogs_other.train.novelty import (
    NoveltyGate,
    attach_gate,
    gate_probs,
    nearest_similarity,
    unit,
)
from cats_dogs_other.train.ood import calibrate_threshold

OTHER = 2


def test_threshold_sends_ood_to_other_without_costing_accuracy() -> None:
    # in-distribution: confident and right, except one unsure-but-right dog at 0.62
    id_probs = np.array([[0.95, 0.03, 0.02], [0.05, 0.9, 0.05], [0.3, 0.62, 0.08], [0, 0, 1.0]])
    id_labels = np.array([0, 1, 1, 2])
    ood_probs = np.array([[0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    t, details = calibrate_threshold(id_probs, id_labels, ood_probs, OTHER)
    assert t is not None and 0.6 < t <= 0.62  # catches 0.5 and 0.6, never the 0.62 dog
    assert details["in_distribution_accuracy_with_rule"] == 1.0
    assert details["ood_other_rate_without_rule"] == 0.25
    assert details["ood_other_rate_with_rule"] == 0.75
    # allowing one in-distribution mistake buys the 0.7 image too
    t2, d2 = calibrate_threshold(id_probs, id_labels, ood_probs, OTHER, max_id_accuracy_loss=0.25)
    assert t2 is not None and t2 > 0.62 and d2["ood_other_rate_with_rule"] == 1.0


def test_no_threshold_when_none_helps() -> None:
    id_probs = np.array([[0.55, 0.4, 0.05], [0.1, 0.85, 0.05]])
    ood_probs = np.array([[0.9, 0.05, 0.05]])  # more confident than any in-distribution image
    t, details = calibrate_threshold(id_probs, np.array([0, 1]), ood_probs, OTHER)
    assert t is None
    assert details["ood_other_rate_with_rule"] == details["ood_other_rate_without_rule"] == 0.0


def test_nearest_similarity_is_cosine_to_the_closest_reference() -> None:
    reference = unit(np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    sims = nearest_similarity(np.array([[2.0, 0, 0], [1.0, 1.0, 0], [0, 0, 3.0]]), reference)
    np.testing.assert_allclose(sims, [1.0, np.sqrt(0.5), 0.0], atol=1e-6)


def test_keras_gate_matches_the_numpy_mirror() -> None:
    """The layers written into model.keras compute exactly what calibration assumed."""
    import keras

    rng = np.random.default_rng(0)
    reference = unit(rng.normal(size=(6, 4)))
    gate = NoveltyGate(reference=reference, threshold=0.8, fallback=OTHER)
    features_in = keras.Input(shape=(4,))
    probs_in = keras.Input(shape=(3,))
    model = keras.Model([features_in, probs_in], attach_gate(features_in, probs_in, gate))
    features = np.concatenate([reference[:3] * 5, rng.normal(size=(5, 4))]).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), size=len(features)).astype(np.float32)
    got = np.asarray(model([features, probs]))
    want = gate_probs(probs, nearest_similarity(features, reference), 0.8, OTHER)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # a copy of a reference image passes untouched; a far-away one becomes Other
    np.testing.assert_allclose(got[:3], probs[:3], atol=1e-5)
    far = np.argmin(nearest_similarity(features, reference))
    assert got[far, OTHER] == pytest.approx(1.0, abs=1e-3)


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
    cats = np.asarray(ood.categories)
    for category in set(ood.categories):  # half of each category (rounded up) calibrates
        in_cat = cats == category
        assert ood.calibration[in_cat].sum() == (in_cat.sum() + 1) // 2
    assert ood.sha256 == manifest["sha256"]
    # a folder it did not make is never wiped
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not made by this command"):
        collect(tmp_path / "mine", debian=False)
    assert (tmp_path / "mine" / "holiday.jpg").read_bytes() == b"precious"
