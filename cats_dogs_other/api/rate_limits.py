"""Per-client limits on images classified, on the ``limits`` library's moving window.

``RATE_LIMIT`` (e.g. ``600/minute``) applies to every client; ``RATE_LIMITS_BY_CLIENT`` overrides
it per client key. A client key is ``<issuer name>:<client>`` (:func:`client_key`); only the
image endpoints count, in images: a batch of 32 counts 32.

Why a moving window: it is exact (at most N images in any window, with no doubling at window
edges as a fixed window allows), atomic on Redis (one Lua script per charge, all or nothing
for a batch), and costs one list of at most N timestamps per active client, each list with a
TTL of one window. The sliding-window counter is cheaper but approximate.

Order on a request: authentication, then the charge, then decoding, so refused work costs no
CPU. A single image is charged before its body is read; a batch is pre-checked (at least one
image left) before its body is read and charged all at once after parsing. A batch larger
than the client's whole limit is a 422 naming RATE_LIMIT (a 429 could never clear).

Store unreachable or slower than ``STATE_TIMEOUT_MS``: the request is served (fail open: a
limit protects capacity, and refusing everyone while Redis is down would be a worse outage),
counted in ``cats_dogs_other_state_store_errors_total{use="rate_limit"}`` and logged at most
once per interval. The answers carry the IETF headers of draft-ietf-httpapi-ratelimit-headers-10
(:data:`HEADERS_DRAFT`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from cats_dogs_other.api.auth.tokens import Principal
from cats_dogs_other.api.errors import BatchOverLimitError, RateLimitedError
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.state import StoreErrorReport

logger = logging.getLogger(__name__)

HEADERS_DRAFT = "draft-ietf-httpapi-ratelimit-headers-10"
POLICY_NAME = "images"
# The issuer name of OAUTH2_ISSUER's clients in client keys; other issuers name their own
# (GitHub Actions callers are keyed github:<repository_id>).
DEFAULT_ISSUER_NAME = "oauth2"
STATE_NAMESPACE = "rl"


def client_key(principal: Principal, issuer_name: str = DEFAULT_ISSUER_NAME) -> str:
    """``<issuer name>:<client>`` for a verified principal: the seam every issuer plugs into.

    The client is the token's ``azp``, else ``client_id``, else ``sub`` (see ``tokens.py``).
    A trust-policy issuer's principal already names itself: ``github:<repository_id>``.
    """
    if principal.issuer_name is not None:
        return principal.client_id
    return f"{issuer_name}:{principal.client_id}"


@dataclass(frozen=True, slots=True)
class Limit:
    """The limit a client is under, with the text of the setting it came from."""

    item: RateLimitItem
    text: str
    setting: str

    @property
    def policy_header(self) -> str:
        return f'"{POLICY_NAME}";q={self.item.amount};w={self.item.get_expiry()}'


class RateLimiter:
    """Charges images to clients; fails open when the store cannot answer in time."""

    def __init__(
        self,
        default: str | None,
        overrides: Mapping[str, str],
        *,
        storage: MemoryStorage | RedisStorage,
        timeout_s: float,
        count_store_error: Callable[[str], None] | None = None,
        count_limited: Callable[[], None] | None = None,
    ) -> None:
        self._default = Limit(parse(default), default, "RATE_LIMIT") if default else None
        self._overrides = {
            client: Limit(parse(text), text, "RATE_LIMITS_BY_CLIENT")
            for client, text in overrides.items()
        }
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._timeout_s = timeout_s
        self._report = StoreErrorReport("rate_limit", logger, count_store_error)
        self._count_limited = count_limited

    @classmethod
    def from_settings(
        cls, settings: Settings, pool: Any | None = None, **counters: Any
    ) -> RateLimiter | None:
        """None when no limit is configured; Redis storage on ``pool`` (the process's own)."""
        if not settings.rate_limit and not settings.client_limits:
            return None
        storage: MemoryStorage | RedisStorage
        if pool is None:
            storage = MemoryStorage()
        else:
            storage = RedisStorage(
                "async+redis://",  # the pool decides where; the URI only names the kind
                implementation="redispy",
                key_prefix=settings.state_key_prefix + STATE_NAMESPACE,
                connection_pool=pool,
            )
        return cls(
            settings.rate_limit,
            settings.client_limits,
            storage=storage,
            timeout_s=settings.state_timeout_ms / 1000,
            **counters,
        )

    def limit_for(self, client: str) -> Limit | None:
        return self._overrides.get(client, self._default)

    async def precheck(self, client: str) -> Limit | None:
        """Refuse (429) before a body is read when not even one image is left."""
        limit = self.limit_for(client)
        if limit is not None and await self._ask(self._strategy.test, limit, client, 1) is False:
            await self._refuse(limit, client)
        return limit

    async def charge(self, client: str, images: int) -> Limit | None:
        """Charge ``images`` at once, or none of them: 429 over the limit, 422 above it."""
        limit = self.limit_for(client)
        if limit is None:
            return None
        if images > limit.item.amount:
            raise BatchOverLimitError(
                f"This batch has {images} images but your limit allows {limit.item.amount} per "
                f"{_window_text(limit)} ({limit.setting}={limit.text}): send at most "
                f"{limit.item.amount} images per request.",
                limit=limit.text,
            )
        if await self._ask(self._strategy.hit, limit, client, images) is False:
            await self._refuse(limit, client)
        return limit

    async def _ask(self, call: Callable[..., Any], limit: Limit, client: str, cost: int) -> bool:
        """The strategy's answer; True (serve) when the store cannot give one in time."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await call(limit.item, _identifier(client), cost=cost))
        except Exception as exc:  # any store failure: fail open, counted and logged
            self._report("rate limits not enforced, state store failing: %s", type(exc).__name__)
            return True

    async def _refuse(self, limit: Limit, client: str) -> None:
        retry_after_s = float(limit.item.get_expiry())
        try:
            async with asyncio.timeout(self._timeout_s):
                stats = await self._strategy.get_window_stats(limit.item, _identifier(client))
            retry_after_s = stats.reset_time - time.time()
        except Exception as exc:  # the refusal stands; Retry-After falls back to the window
            self._report("rate-limit window not readable: %s", type(exc).__name__)
        retry_after = max(1, math.ceil(retry_after_s))
        if self._count_limited is not None:
            self._count_limited()
        raise RateLimitedError(
            f"Too many images: your limit is {limit.text} ({limit.setting}); retry in "
            f"{retry_after} s.",
            limit=limit.text,
            retry_after_s=retry_after,
            headers={
                "RateLimit-Policy": limit.policy_header,
                "RateLimit": f'"{POLICY_NAME}";r=0;t={retry_after}',
            },
        )


def _identifier(client: str) -> str:
    """Fixed length, no client text in a Redis key."""
    return hashlib.sha256(client.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


def _window_text(limit: Limit) -> str:
    seconds = limit.item.get_expiry()
    return "second" if seconds == 1 else f"{seconds} s"
