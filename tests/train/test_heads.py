"""Sample weighting of the heads trained on cached features."""

from __future__ import annotations

import numpy as np
import pytest

from cats_dogs_other.train.heads import sample_weights


def test_sample_weights_balance_classes_or_strata() -> None:
    labels = np.array([0, 0, 0, 1])
    strata = np.array(["a", "a", "b", "b"])
    assert sample_weights(labels, strata, "none").tolist() == [1, 1, 1, 1]
    by_class = sample_weights(labels, strata, "class")
    assert by_class[:3].sum() == pytest.approx(by_class[3])
    by_stratum = sample_weights(labels, strata, "stratum")  # a0 (2), b0 (1), b1 (1)
    assert by_stratum[:2].sum() == pytest.approx(by_stratum[2]) == pytest.approx(by_stratum[3])
