"""A bounded, time-expiring record of DPoP proof ids (``jti``) already accepted.

RFC 9449 section 11.1: a proof may be used once. An entry lives only while its proof could still
pass the ``iat`` window; after that the window check alone refuses the proof, so forgetting it is
safe. When the cache is full of live entries it refuses new proofs (:class:`ReplayCacheFullError`)
instead of evicting one early: an evicted ``jti`` could be replayed.

The record is per process: the development issuer uses it directly, and the API wraps it as
:class:`~cats_dogs_other.api.state.InProcessState` when ``STATE_URL`` is unset. With several
workers or replicas, ``STATE_URL`` moves the record to Redis (``SET key 1 NX PX ttl``), shared
by all of them (:mod:`cats_dogs_other.api.state_redis`).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Hashable


class ReplayError(Exception):
    """This proof id was already accepted within its validity window."""


class ReplayCacheFullError(Exception):
    """Every slot holds a live entry; ``retry_after_s`` is when the oldest one expires."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("the DPoP replay cache is full")
        self.retry_after_s = retry_after_s


class ReplayCache:
    """At most ``max_entries`` ids, each forgotten at its own expiry time (never earlier)."""

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._expiry: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []  # (expiry, insertion order, key)
        self._counter = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._expiry)

    def add(self, key: Hashable, expires_at: float) -> None:
        """Record ``key`` until ``expires_at``; raise if it is already there or there is no room."""
        with self._lock:
            now = self._clock()
            self._purge(now)
            if key in self._expiry:
                raise ReplayError
            if len(self._expiry) >= self._max_entries:
                raise ReplayCacheFullError(max(self._heap[0][0] - now, 0.0))
            self._expiry[key] = expires_at
            self._counter += 1
            heapq.heappush(self._heap, (expires_at, self._counter, key))

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, key = heapq.heappop(heap)
            del self._expiry[key]
