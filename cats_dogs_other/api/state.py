"""State shared by every process that serves the API: records of things used once.

``STATE_URL`` unset gives :class:`InProcessState` (one process); a ``redis://``,
``rediss://`` or ``unix://`` URL gives :class:`~cats_dogs_other.api.state_redis.RedisState`,
shared by every worker and replica. Callers depend only on :class:`StateStore`, which the
lifespan builds with :func:`open_state` and routes reach through ``StateDep``.

A caller that must fail closed (a DPoP ``jti``, a single-use token) treats
:class:`StateUnavailableError` as "cannot tell": it refuses the request with 503 and
``Retry-After``; it never accepts unchecked.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cats_dogs_other.api.store_health import StateUnavailableError, StoreHealth
from cats_dogs_other.core.replay_cache import ReplayCache, ReplayCacheFullError, ReplayError

if TYPE_CHECKING:
    from cats_dogs_other.api.settings import Settings


class StateStore(Protocol):
    async def claim_once(self, key: str, ttl_ms: int) -> bool:
        """Record ``key`` for ``ttl_ms`` if absent (``SET key 1 NX PX ttl``).

        True: this call recorded it (first use). False: it was already there (a replay).
        Raises :class:`StateUnavailableError` when the store cannot say.
        ``key`` is already hashed and fixed-length; the store adds its own prefix.
        """
        ...

    @property
    def health(self) -> StoreHealth:
        """The store's state as last seen by its background check (no I/O)."""
        ...

    @property
    def data_lost_at(self) -> float | None:
        """When the store was last found restarted without its data (epoch seconds), if ever.

        Records made before then are gone: a caller refuses what it cannot tell apart from a
        replay (a DPoP proof whose ``iat`` precedes it) for one validity window.
        """
        ...


class StoreErrorReport:
    """Counts each failed store call in a metric and logs at most once per ``interval_s``:
    a store outage under load must not turn into one log line per request."""

    def __init__(
        self,
        use: str,
        logger: logging.Logger,
        count: Callable[[str], None] | None = None,
        *,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._use = use
        self._logger = logger
        self._count = count
        self._interval_s = interval_s
        self._clock = clock
        self._last = -interval_s
        self._missed = 0

    def __call__(self, message: str, *args: object) -> None:
        if self._count is not None:
            self._count(self._use)
        now = self._clock()
        if now - self._last < self._interval_s:
            self._missed += 1
            return
        missed, self._missed, self._last = self._missed, 0, now
        suffix = f" ({missed} more since the last report)" if missed else ""
        self._logger.warning(message + suffix, *args, extra={"event": "state_store_error"})


def hashed_key(namespace: str, *parts: str) -> str:
    """``namespace:`` + hex SHA-256 of the length-prefixed parts: fixed length, no client text.

    Length prefixes keep ``("ab", "c")`` and ``("a", "bc")`` apart.
    """
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return f"{namespace}:{digest.hexdigest()}"


class InProcessState:
    """One process's record, bounded (:class:`ReplayCache`): full of live entries, it refuses
    new claims with :class:`StateUnavailableError` rather than forget one early."""

    health: StoreHealth = "in-process"
    data_lost_at: float | None = None

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._cache = ReplayCache(max_entries, clock=clock)

    def __len__(self) -> int:
        return len(self._cache)

    async def claim_once(self, key: str, ttl_ms: int) -> bool:
        try:
            self._cache.add(key, self._clock() + max(ttl_ms, 1) / 1000)
        except ReplayError:
            return False
        except ReplayCacheFullError as exc:
            raise StateUnavailableError(
                "too many single-use records are live in this process",
                retry_after_s=exc.retry_after_s,
            ) from None
        return True

    async def aclose(self) -> None:
        """Nothing to release; here so the lifespan treats every store alike."""


def open_state(settings: Settings) -> InProcessState | RedisState:
    """The store ``STATE_URL`` names; the Redis client is imported only when it is used."""
    if settings.state_url is None:
        return InProcessState(settings.dpop_replay_cache_size)
    from cats_dogs_other.api.state_redis import RedisState

    return RedisState(
        settings.state_url.get_secret_value().strip(),
        timeout_ms=settings.state_timeout_ms,
        key_prefix=settings.state_key_prefix,
    )


if TYPE_CHECKING:
    from cats_dogs_other.api.state_redis import RedisState
