"""The replay cache: one use per id, forgotten only at expiry, refusal (not eviction) when full."""

from __future__ import annotations

import pytest

from cats_dogs_other.core.replay_cache import ReplayCache, ReplayCacheFullError, ReplayError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_id_is_accepted_once() -> None:
    cache = ReplayCache(10, clock=Clock())
    cache.add("a", 1_060.0)
    with pytest.raises(ReplayError):
        cache.add("a", 1_060.0)
    cache.add("b", 1_060.0)
    assert len(cache) == 2


def test_an_id_is_forgotten_only_at_its_expiry() -> None:
    clock = Clock()
    cache = ReplayCache(10, clock=clock)
    cache.add("a", 1_060.0)
    clock.now = 1_059.9
    with pytest.raises(ReplayError):
        cache.add("a", 1_120.0)
    clock.now = 1_060.0
    cache.add("a", 1_120.0)  # expired, so the window check alone guards it now


def test_full_cache_refuses_and_says_when_a_slot_frees() -> None:
    clock = Clock()
    cache = ReplayCache(2, clock=clock)
    cache.add("a", 1_030.0)
    cache.add("b", 1_050.0)
    with pytest.raises(ReplayCacheFullError) as full:
        cache.add("c", 1_060.0)
    assert full.value.retry_after_s == pytest.approx(30.0)
    with pytest.raises(ReplayError):  # nothing was evicted
        cache.add("a", 1_030.0)
    clock.now = 1_030.0
    cache.add("c", 1_060.0)
    assert len(cache) == 2


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReplayCache(0)
