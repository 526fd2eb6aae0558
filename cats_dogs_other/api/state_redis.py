"""The shared store on Redis (7+, or Valkey) through redis-py's asyncio client.

One connection pool per process, shared with the rate limiter (``limits`` on the same pool).
Every call is bounded by ``STATE_TIMEOUT_MS`` (connect included): a store that is down, slow,
hangs or answers garbage raises :class:`StateUnavailableError`, never anything else.

Two holes in "fail closed" are closed here:

- eviction: with any ``maxmemory-policy`` but ``noeviction`` Redis may drop a live record under
  memory pressure, and the replay it guarded would pass. The policy is read at start-up (a
  wrong one stops the API) and whenever the store is first reached; where ``CONFIG GET`` is
  refused (managed Redis) a warning says to set it by hand.
- restarts without data: each new connection reads the server's ``run_id`` before its first
  command. A new ``run_id`` (Redis restarted, its records lost) sets :attr:`data_lost_at`, and
  callers refuse what was possibly recorded before it for one validity window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from cats_dogs_other.api.store_health import StateUnavailableError, StoreHealth

logger = logging.getLogger(__name__)

PING_INTERVAL_S = 1.0
START_UP_TIMEOUT_S = 2.0  # the start-up configuration check; requests use STATE_TIMEOUT_MS
REQUIRED_POLICY = "noeviction"
# Anything the client raises means "cannot tell": a garbage-speaking peer can make redis-py's
# parser fail with AttributeError or TypeError as well as RedisError.
STORE_ERRORS = (Exception,)


class StoreConfigError(Exception):
    """The store answers but is configured so that it could lose live records."""


class RedisState:
    """``SET key 1 NX PX ttl`` with a prefix, bounded in time; health from a background ping."""

    def __init__(
        self,
        url: str,
        *,
        timeout_ms: int,
        key_prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.timeout_s = timeout_ms / 1000
        self.key_prefix = key_prefix
        self._clock = clock
        self._run_id: str | None = None
        self._policy_checked = False
        self.data_lost_at: float | None = None
        self.health: StoreHealth = "unavailable"
        self._pinger: asyncio.Task[None] | None = None
        self.pool = aioredis.ConnectionPool.from_url(
            url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            # One immediate retry on a broken connection (a pooled one left over from before a
            # Redis restart), none on a timeout: a SET NX that timed out may have been applied,
            # and its retry would then look like a replay.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            redis_connect_func=self._on_connect,
        )
        self.client = aioredis.Redis(connection_pool=self.pool)

    async def claim_once(self, key: str, ttl_ms: int) -> bool:
        if self.health == "misconfigured":
            raise StateUnavailableError("the shared state store may evict records (see the log)")
        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await self.client.set(
                    self.key_prefix + key, b"1", nx=True, px=max(int(ttl_ms), 1)
                )
        except STORE_ERRORS as exc:
            raise StateUnavailableError(
                f"the shared state store did not answer ({type(exc).__name__})"
            ) from None
        if answer is True:
            return True
        if answer is None:
            return False
        raise StateUnavailableError("the shared state store answered something unexpected")

    async def check_config(self, timeout_s: float = START_UP_TIMEOUT_S) -> None:
        """Raise :class:`StoreConfigError` for an eviction policy other than ``noeviction``.

        Unreachable: logged, and checked again by the background ping once the store answers,
        so a store that is down at start-up does not stop Bearer traffic.
        """
        try:
            policy = await self._read_policy(timeout_s)
        except STORE_ERRORS as exc:
            logger.warning(
                "the state store is not reachable at start-up (%s); DPoP requests get 503 "
                "until it is",
                type(exc).__name__,
            )
            return
        self._accept_policy(policy)

    def start(self) -> None:
        """Begin the background ping that :attr:`health` and the metric report."""
        if self._pinger is None:
            self._pinger = asyncio.create_task(self._ping_forever(), name="state-store-ping")

    async def ping(self) -> StoreHealth:
        """One check, recorded in :attr:`health`; the policy too until it has been seen right."""
        try:
            if not self._policy_checked:
                self._accept_policy(await self._read_policy(self.timeout_s))
            async with asyncio.timeout(self.timeout_s):
                await self.client.ping()
        except StoreConfigError as exc:
            if self.health != "misconfigured":
                logger.error("%s", exc, extra={"event": "state_store_misconfigured"})
            self.health = "misconfigured"
            return self.health
        except STORE_ERRORS:
            self.health = "unavailable"
            return self.health
        self.health = "ok"
        return self.health

    async def _read_policy(self, timeout_s: float) -> str | None:
        """``maxmemory-policy``, or None where ``CONFIG`` is refused (managed Redis)."""
        try:
            async with asyncio.timeout(timeout_s):
                answer = await self.client.config_get("maxmemory-policy")
        except ResponseError:
            return None
        return _text(_config_value(answer, "maxmemory-policy"))

    def _accept_policy(self, policy: str | None) -> None:
        if policy is None:
            logger.warning(
                "cannot read the state store's maxmemory-policy (CONFIG refused): make sure it "
                "is %s",
                REQUIRED_POLICY,
            )
        elif policy != REQUIRED_POLICY:
            raise StoreConfigError(
                f"STATE_URL: the Redis server's maxmemory-policy is {policy!r}; it must be "
                f"{REQUIRED_POLICY!r} (an evicted record lets a replay through): run "
                f"CONFIG SET maxmemory-policy {REQUIRED_POLICY} and persist it in redis.conf"
            )
        self._policy_checked = True

    async def aclose(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        await self.client.aclose()
        await self.pool.disconnect()

    async def _ping_forever(self) -> None:
        previous: StoreHealth | None = None
        while True:
            health = await self.ping()
            if health != previous:
                log = logger.info if health == "ok" else logger.warning
                log("state store is %s", health, extra={"event": "state_store"})
                previous = health
            await asyncio.sleep(PING_INTERVAL_S)

    async def _on_connect(self, connection: Any) -> None:
        """Every new connection: the usual hand-shake, then the server's ``run_id``."""
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        try:
            info = _text(await connection.read_response())
        except ResponseError:  # INFO refused by an ACL: restarts cannot be told apart
            return
        run_id = _run_id(info)
        if not run_id:
            raise ResponseError("the store's INFO names no run_id")
        if self._run_id is not None and run_id != self._run_id:
            self.data_lost_at = self._clock()
            logger.warning(
                "the state store restarted without its data (new run_id): proofs issued before "
                "now are refused for one window",
                extra={"event": "state_store_restarted"},
            )
        self._run_id = run_id


def _run_id(info: str) -> str:
    for line in info.splitlines():
        if line.startswith("run_id:"):
            return line.partition(":")[2].strip()
    return ""


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _config_value(answer: object, name: str) -> object:
    """``CONFIG GET`` answers a mapping (redis-py) or a flat list, depending on the protocol."""
    if isinstance(answer, dict):
        for key, value in answer.items():
            if _text(key) == name:
                return value
        return ""
    if isinstance(answer, list | tuple) and len(answer) >= 2:
        return answer[1]
    return ""
