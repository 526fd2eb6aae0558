"""Stratified, seeded splits and folds; grouped splits that never cut a group."""

from __future__ import annotations

import numpy as np
import pytest

from cats_dogs_other.train.errors import ClassTooSmallError
from cats_dogs_other.train.split import Split, grouped_split, stratified_folds

# The shape of the real dataset: 59 cats, 76 dogs, 57 others, shuffled.
LABELS = np.random.default_rng(3).permutation(np.repeat([0, 1, 2], [59, 76, 57]))


def _split(labels: np.ndarray, seed: int = 42, **fractions: float) -> Split:
    """One source, one image per group: the layout of the course set."""
    fractions = {"val_fraction": 0.1, "calibration_fraction": 0.0, "test_fraction": 0.1} | fractions
    strata = np.full(len(labels), "course")
    groups = [f"img{i}" for i in range(len(labels))]
    return grouped_split(labels, strata, groups, seed=seed, **fractions)


def test_same_seed_same_split_other_seed_other_split() -> None:
    a = _split(LABELS, seed=7)
    b = _split(LABELS.copy(), seed=7)
    c = _split(LABELS, seed=8)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.test, c.test)


def test_split_is_a_stratified_partition() -> None:
    s = _split(LABELS, val_fraction=0.1, test_fraction=0.1)
    everything = np.concatenate([s.train, s.val, s.test])
    assert sorted(everything.tolist()) == list(range(len(LABELS)))
    assert s.sizes() == {"train": 152, "val": 20, "test": 20}
    # every class is in every split, in proportion (rounded half up per class)
    assert np.bincount(LABELS[s.test]).tolist() == [6, 8, 6]
    assert np.bincount(LABELS[s.val]).tolist() == [6, 8, 6]


def test_bad_fractions_are_rejected() -> None:
    with pytest.raises(ValueError, match="add up to < 1"):
        _split(LABELS, val_fraction=0.5, test_fraction=0.5)


def test_folds_hold_out_every_image_once_and_are_deterministic() -> None:
    folds = stratified_folds(LABELS, 5, seed=1)
    held = np.concatenate([te for _, te in folds])
    assert sorted(held.tolist()) == list(range(len(LABELS)))
    for train, test in folds:
        assert not set(train) & set(test)
        assert 11 <= np.bincount(LABELS[test])[0] <= 12  # 59 cats / 5 folds
    again = stratified_folds(LABELS, 5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))


def test_folds_need_enough_images_per_class() -> None:
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ClassTooSmallError, match="5-fold"):
        stratified_folds(labels, 5, class_names=("Cat", "Dog"))


def test_grouped_split_never_cuts_a_group_and_holds_out_every_stratum() -> None:
    labels = np.array([0] * 40 + [2] * 60)
    strata = np.array(["pets"] * 40 + ["imagenet"] * 60)
    groups = [f"p{i}" for i in range(40)] + [f"n{i // 3}" for i in range(60)]  # 3 per class
    split = grouped_split(
        labels, strata, groups, val_fraction=0.1, calibration_fraction=0.1, test_fraction=0.2
    )
    parts = {"train": split.train, "val": split.val, "cal": split.calibration, "test": split.test}
    seen: dict[str, str] = {}
    for name, idx in parts.items():
        for i in idx:
            assert seen.setdefault(groups[i], name) == name, f"group {groups[i]} cut"
    assert sum(len(v) for v in parts.values()) == 100
    assert len(split.test) == 8 + 12 and len(split.calibration) == 4 + 6
    again = grouped_split(
        labels, strata, groups, val_fraction=0.1, calibration_fraction=0.1, test_fraction=0.2
    )
    assert np.array_equal(again.test, split.test)  # seeded


def test_a_stratum_too_small_to_split_stays_in_training() -> None:
    labels, strata = np.array([0, 0, 1]), np.array(["a", "a", "a"])
    split = grouped_split(
        labels,
        strata,
        ["g1", "g2", "g3"],
        val_fraction=0.3,
        calibration_fraction=0.3,
        test_fraction=0.3,
    )
    assert split.train.tolist() == [0, 1, 2]
