"""What every state store reports and raises, in a module of its own.

:mod:`cats_dogs_other.api.state` (the protocol, the in-process store, the choice of store) and
:mod:`cats_dogs_other.api.state_redis` (the Redis store) both need these two names; holding them
here lets the Redis store import them without importing the module that chooses it.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["StateUnavailableError", "StoreHealth"]

# What /health and the metric report: the last background check, never a live call.
StoreHealth = Literal["in-process", "ok", "unavailable", "misconfigured"]


class StateUnavailableError(Exception):
    """The store did not answer within its timeout, or answered something unusable."""

    def __init__(
        self, message: str = "the shared state store is unavailable", *, retry_after_s: float = 1.0
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
