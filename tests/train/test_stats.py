"""Proportions with their n and 95% Wilson interval, as every figure of the card is written."""

from __future__ import annotations

from cats_dogs_other.train.stats import proportion


def test_the_interval_is_wilsons_and_matches_published_values() -> None:
    assert proportion(81, 263).ci95 == [0.2553, 0.3662]  # Newcombe (1998) example
    perfect = proportion(12, 12).ci95  # all right on 12: still not "certainly perfect"
    assert perfect is not None and perfect[1] == 1.0 and 0.75 < perfect[0] < 0.76
    assert proportion(0, 0).ci95 is None and proportion(0, 0).value is None


def test_proportion_is_written_with_n_and_interval() -> None:
    p = proportion(39, 40)
    assert p.value == 0.975 and p.k == 39 and p.n == 40
    assert str(p) == "97.5% (39/40, 95% CI 87.1%-99.6%)"
    assert str(proportion(0, 0)) == "n/a (n=0)"
