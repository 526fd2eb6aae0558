"""Proportions with their n and 95% Wilson interval, as every figure of the card is written."""

from __future__ import annotations

from cats_dogs_other.train.stats import proportion, wilson_interval


def test_wilson_interval_matches_published_values() -> None:
    published = wilson_interval(81, 263)  # Newcombe (1998) example: 0.2553-0.3662
    assert published is not None
    assert (round(published[0], 4), round(published[1], 4)) == (0.2553, 0.3662)
    perfect = wilson_interval(12, 12)  # all right on 12: still not "certainly perfect"
    assert perfect is not None and perfect[1] == 1.0 and 0.75 < perfect[0] < 0.76
    assert wilson_interval(0, 0) is None


def test_proportion_is_written_with_n_and_interval() -> None:
    p = proportion(39, 40)
    assert p.value == 0.975 and p.k == 39 and p.n == 40
    assert str(p) == "97.5% (39/40, 95% CI 87.1%-99.6%)"
    assert str(proportion(0, 0)) == "n/a (n=0)"
