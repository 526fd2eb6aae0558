"""State shared by every process that serves the API: records of things used once.

``STATE_URL`` unset gives :class:`InProcessState` (one process; today's behaviour); a ``redis://``,
``rediss://`` or ``unix://`` URL gives a Redis-backed store shared by every worker and replica.
Callers depend only on :class:`StateStore`.

A caller that must fail closed (a DPoP ``jti``, a single-use token) treats
:class:`StateUnavailableError` as "cannot tell": it refuses the request with 503 and
``Retry-After``; it never accepts unchecked.
"""

from __future__ import annotations

from typing import Protocol


class StateUnavailableError(Exception):
    """The store did not answer within its timeout, or answered something unusable."""

    def __init__(
        self, message: str = "the shared state store is unavailable", *, retry_after_s: float = 1.0
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StateStore(Protocol):
    async def claim_once(self, key: str, ttl_ms: int) -> bool:
        """Record ``key`` for ``ttl_ms`` if absent (``SET key 1 NX PX ttl``).

        True: this call recorded it (first use). False: it was already there (a replay).
        Raises :class:`StateUnavailableError` when the store cannot say.
        ``key`` is already hashed and fixed-length; the store adds its own prefix.
        """
        ...
