"""Stateless nonces: recognised across instances with the same secret, for two windows only."""

from __future__ import annotations

import pytest

from cats_dogs_other.core.dpop_nonce import NonceSource

SECRET = b"s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_current_and_previous_window_are_accepted_then_not() -> None:
    clock = Clock()
    source = NonceSource(SECRET, lifetime_s=300, clock=clock)
    nonce = source.current()
    assert source.is_valid(nonce)
    clock.now += 300
    assert source.current() != nonce
    assert source.is_valid(nonce)
    clock.now += 300
    assert not source.is_valid(nonce)


def test_another_instance_with_the_same_secret_agrees() -> None:
    clock = Clock()
    one = NonceSource(SECRET, lifetime_s=300, clock=clock)
    other = NonceSource(SECRET, lifetime_s=300, clock=clock)
    stranger = NonceSource(b"t" * 32, lifetime_s=300, clock=clock)
    assert other.is_valid(one.current())
    assert not stranger.is_valid(one.current())


def test_future_window_is_refused() -> None:
    clock = Clock()
    source = NonceSource(SECRET, lifetime_s=300, clock=clock)
    clock.now += 300
    future = source.current()
    clock.now -= 300
    assert not source.is_valid(future)


@pytest.mark.parametrize("value", [None, 3, "", ".", "abc", "1.", "x" * 65, "١٢.abc"])
def test_malformed_nonces_are_refused(value: object) -> None:
    assert not NonceSource(SECRET, lifetime_s=300).is_valid(value)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        NonceSource(b"short", lifetime_s=300)
