"""The issuer's signing keys (JWKS), cached, refreshed carefully, never trusted from a token.

Why so careful: a cache that never refreshes refuses keys the provider rotates in (the course's
library did so for up to 24 hours); one that refetches on every unknown ``kid`` lets anyone
flood the provider through us. So:

* keys are cached for ``ttl_s``; after that they are refreshed in the background while the
  cached ones keep serving (stale-while-revalidate: no request waits on the issuer);
* an unknown ``kid`` triggers one refetch, at most once per ``cooldown_s``, single-flight:
  concurrent callers wait for the same fetch instead of starting their own;
* a failed or garbage refresh (network error, non-JSON, no usable key) keeps the cached keys;
* the JWKS location comes from configuration or the issuer's discovery document, never from a
  token (``jku``, ``x5u``, ``jwk`` headers are not looked at);
* responses are capped in size and the fetch in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key

from cats_dogs_other.api.errors import InvalidTokenError, KeysUnavailableError
from cats_dogs_other.api.settings import Settings, is_loopback

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 512 * 1024
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class KeyFetchError(Exception):
    """The keys (or the discovery document) could not be fetched or made no sense."""


class KeyCache:
    """Maps ``kid`` to the issuer's public keys. One per process, owned by the lifespan."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        issuer: str,
        jwks_uri: str | None,
        discovery_uri: str,
        algorithms: Collection[str],
        ttl_s: float = 600.0,
        cooldown_s: float = 30.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._jwks_uri = jwks_uri
        self._discovery_uri = discovery_uri
        self._algorithms = frozenset(algorithms)
        self._ttl_s = ttl_s
        self._cooldown_s = cooldown_s
        self._timeout = httpx.Timeout(timeout_s)
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._generation = 0  # bumped by every attempt: lets lock waiters skip a duplicate fetch
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.AsyncClient) -> KeyCache:
        return cls(
            client,
            issuer=settings.oauth2_issuer,
            jwks_uri=settings.jwks_uri,
            discovery_uri=settings.discovery_uri,
            algorithms=settings.oauth2_algorithms,
            ttl_s=settings.jwks_cache_ttl_s,
            cooldown_s=settings.jwks_refresh_cooldown_s,
            timeout_s=settings.jwks_fetch_timeout_s,
        )

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def get(self, kid: str) -> Key:
        """The key for ``kid``; refetch once (rate-limited) when it is unknown."""
        if not self._keys:
            await self._refresh_if_due()
        elif self._is_stale():
            self.prefetch()  # serve the cached keys meanwhile
        key = self._keys.get(kid)
        if key is None and self._keys and (self._is_due() or self._lock.locked()):
            await self._refresh_if_due()
            key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._keys:
            raise KeysUnavailableError(
                "The issuer's signing keys cannot be fetched right now; retry shortly.",
                retry_after_s=self._retry_after(),
            )
        raise InvalidTokenError(
            "The token was signed with a key the issuer does not publish.", reason="unknown_kid"
        )

    async def aclose(self) -> None:
        task, self._background = self._background, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- refresh policy -------------------------------------------------------------------

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._ttl_s

    def _is_due(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._cooldown_s

    def _retry_after(self) -> float:
        if self._attempted_at is None:
            return 1.0
        return max(1.0, self._cooldown_s - (self._clock() - self._attempted_at))

    def prefetch(self) -> asyncio.Future[None]:
        """Start a refresh if keys are missing or stale (rate-limited); do not wait for it."""
        if self._background is None or self._background.done():
            if (not self._keys or self._is_stale()) and self._is_due():
                self._background = asyncio.create_task(self._refresh_if_due())
            else:
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                done.set_result(None)
                return done
        return self._background

    async def _refresh_if_due(self) -> None:
        """Single flight: whoever holds the lock fetches; those who waited reuse its result."""
        generation = self._generation
        async with self._lock:
            if self._generation != generation or not self._is_due():
                return
            self._attempted_at = self._clock()
            try:
                keys = await self._fetch()
            except KeyFetchError as exc:
                self.last_error = str(exc)
                logger.warning(
                    "signing keys refresh failed; keeping %d cached key(s): %s",
                    len(self._keys),
                    exc,
                )
            else:
                self._keys, self._fetched_at, self.last_error = keys, self._clock(), None
                logger.info("signing keys refreshed: %d key(s)", len(keys))
            finally:
                self._generation += 1

    # -- fetching -------------------------------------------------------------------------

    async def _fetch(self) -> dict[str, Key]:
        uri = self._jwks_uri or await self._discover()
        document = await self._get_json(uri)
        keys = parse_jwks(document, self._algorithms)
        if not keys:
            raise KeyFetchError(f"{uri} holds no usable signing key")
        return keys

    async def _discover(self) -> str:
        document = await self._get_json(self._discovery_uri)
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or issuer.rstrip("/") != self._issuer.rstrip("/"):
            raise KeyFetchError(f"discovery document names issuer {issuer!r}, not ours")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str) or not _safe_url(uri):
            raise KeyFetchError("discovery document has no usable https jwks_uri")
        self._jwks_uri = uri  # discovered once per process
        return uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with (
                asyncio.timeout(self._timeout.read),
                self._client.stream("GET", url, timeout=self._timeout) as response,
            ):
                if response.status_code != 200:
                    raise KeyFetchError(f"GET {url} answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise KeyFetchError(f"GET {url}: document larger than 512 KiB")
        except (httpx.HTTPError, TimeoutError) as exc:
            raise KeyFetchError(f"GET {url} failed: {type(exc).__name__}") from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise KeyFetchError(f"GET {url}: not JSON") from exc
        if not isinstance(document, dict):
            raise KeyFetchError(f"GET {url}: not a JSON object")
        return document


def parse_jwks(document: dict[str, Any], algorithms: Collection[str]) -> dict[str, Key]:
    """Usable public signing keys by kid; anything odd is skipped, not fatal."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        return {}
    keys: dict[str, Key] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid, kty = entry.get("kid"), entry.get("kty")
        if not isinstance(kid, str) or not kid or kty not in SIGNING_KEY_TYPES:
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", None) not in (None, *algorithms):
            continue
        public = {k: v for k, v in entry.items() if k not in {"d", "p", "q", "dp", "dq", "qi"}}
        try:
            keys[kid] = JWKRegistry.import_key(public)
        except (JoseError, ValueError, TypeError) as exc:
            logger.warning("skipping signing key %r: %s", kid, exc)
    return keys


def _safe_url(url: str) -> bool:
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.host))
