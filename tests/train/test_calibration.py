"""The decision rule and its calibration: macro recall, and a threshold kept only when it pays."""

from __future__ import annotations

import numpy as np
import pytest

from cats_dogs_other.train.calibration import choose_threshold, decide, macro_recall

OTHER = 2


def test_macro_recall_weighs_every_source_and_class_alike() -> None:
    y = np.array([1] * 9 + [1])
    strata = np.array(["pets"] * 9 + ["imagenet"])
    pred = np.array([1] * 9 + [2])  # the one ImageNet dog missed
    assert np.mean(pred == y) == 0.9
    assert macro_recall(y, pred, strata) == pytest.approx(0.5)


def test_threshold_is_kept_only_when_it_pays() -> None:
    probs = np.array([[0.95, 0.03, 0.02], [0.05, 0.9, 0.05], [0.45, 0.4, 0.15], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, OTHER, OTHER])  # the unsure one is really Other
    strata = np.array(["s"] * 4)
    t, details = choose_threshold(probs, labels, strata, OTHER, min_gain=0.005)
    assert t is not None and 0.45 < t <= 0.8
    assert decide(probs, t, OTHER).tolist() == [0, 1, OTHER, OTHER]
    assert details.macro_recall_with_best == 1.0 > details.macro_recall_without
    sure = np.array([[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.1, 0.1, 0.8]])
    t, details = choose_threshold(sure, np.array([0, 1, 2]), np.array(["s"] * 3), OTHER, 0.005)
    assert t is None and details.chosen is None
