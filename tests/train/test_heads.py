"""Sample weighting of the heads trained on cached features, and the choice among heads."""

from __future__ import annotations

import numpy as np
import pytest

from cats_dogs_other.train.config import Weighting
from cats_dogs_other.train.heads import sample_weights
from cats_dogs_other.train.results import Candidate
from cats_dogs_other.train.selection import preferred


def test_sample_weights_balance_classes_or_strata() -> None:
    labels = np.array([0, 0, 0, 1])
    strata = np.array(["a", "a", "b", "b"])
    assert sample_weights(labels, strata, "none").tolist() == [1, 1, 1, 1]
    by_class = sample_weights(labels, strata, "class")
    assert by_class[:3].sum() == pytest.approx(by_class[3])
    by_stratum = sample_weights(labels, strata, "stratum")  # a0 (2), b0 (1), b1 (1)
    assert by_stratum[:2].sum() == pytest.approx(by_stratum[2]) == pytest.approx(by_stratum[3])


def _candidate(hidden: int, weighting: Weighting, tta: bool, recall: float) -> Candidate:
    return Candidate(hidden, weighting, tta, recall, None, 10)


def test_the_simplest_candidate_within_the_gain_wins_weightings_in_their_order() -> None:
    rows = [
        _candidate(0, "none", False, 0.991),
        _candidate(0, "stratum", False, 0.990),
        _candidate(0, "stratum", True, 0.999),
        _candidate(256, "none", False, 0.998),
    ]
    chosen = preferred(rows, 0.01, ("stratum", "none", "class"))
    assert (chosen.hidden, chosen.weighting, chosen.tta) == (0, "stratum", False)
    chosen = preferred(rows, 0.01, ("none", "stratum", "class"))
    assert (chosen.hidden, chosen.weighting, chosen.tta) == (0, "none", False)
    # a gain above min_gain buys the mirror pass
    chosen = preferred(rows, 0.005, ("stratum", "none", "class"))
    assert (chosen.hidden, chosen.weighting, chosen.tta) == (0, "stratum", True)
