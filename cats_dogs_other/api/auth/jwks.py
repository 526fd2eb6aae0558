"""The issuer's signing keys (JWKS), cached, refreshed carefully, never trusted from a token.

Why so careful: a cache that never refreshes refuses keys the provider rotates in
(oidc-jwt-validation 0.4.2 does so for up to 24 hours, see ``compare/``); one that refetches on
every unknown ``kid`` lets anyone flood the provider through us. So:

* keys are cached for ``ttl_s``; after that they are refreshed in the background while the
  cached ones keep serving (stale-while-revalidate: no request waits on the issuer);
* an unknown ``kid`` triggers one refetch, at most once per ``cooldown_s``, single-flight:
  concurrent callers wait for the same fetch instead of starting their own;
* a failed or garbage refresh (network error, non-JSON, no usable key) keeps the cached keys;
* while NO key is cached (cold start with the issuer down), a background task retries with a
  short backoff (1 s, growing by half up to ``cooldown_s``: 1, 1.5, 2.3, 3.4... s), so after a
  short outage the API serves within about 2 s of the issuer coming back, and ``Retry-After``
  says when the next attempt is due;
* a key is chosen by ``kid`` AND algorithm: a set may publish keys of several types under one
  ``kid`` (RFC 7517 section 4.5 only asks for distinct ``kid`` per key type); keys weaker than
  RFC 7518 requires (RSA under 2048 bits, a curve that is not a signing curve) are skipped;
* the JWKS location comes from configuration or the issuer's discovery document, never from a
  token (``jku``, ``x5u``, ``jwk`` headers are not looked at);
* responses are capped in size and the fetch in time, and parsed with the bounds of
  :mod:`cats_dogs_other.core.safe_parsing` (a deeply nested document is a failed fetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Collection
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key

from cats_dogs_other.api.errors import InvalidTokenError, KeysUnavailableError
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.core.hosts import is_secure_url
from cats_dogs_other.core.safe_parsing import UnsafeInputError, parse_json_object

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 512 * 1024
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
RECOVERY_BACKOFF_S = 1.0  # first retry while no key is cached; then x1.5 up to the cooldown
RECOVERY_GROWTH = 1.5
MIN_RSA_BITS = 2048  # RFC 7518 sections 3.3 and 3.5
# The key type (and curve) each algorithm needs: RFC 7518 section 3.1, RFC 8037 section 3.1.
ALGORITHM_KEYS: dict[str, tuple[str, frozenset[str] | None]] = {
    **{f"{p}{n}": ("RSA", None) for p in ("RS", "PS") for n in (256, 384, 512)},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}


class KeyFetchError(Exception):
    """The keys (or the discovery document) could not be fetched or made no sense."""


class DiscoveryDocument:
    """An issuer's discovery document, fetched single-flight and reused for ``reuse_s``.

    The key cache (for ``jwks_uri``) and the issuer check (for ``issuer``) both read it at
    start-up; sharing one of these makes that one request. A failed fetch is not remembered.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        uri: str,
        *,
        timeout_s: float = 5.0,
        reuse_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.uri = uri
        self._timeout = httpx.Timeout(timeout_s)
        self._reuse_s = reuse_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._document: dict[str, Any] | None = None
        self._fetched_at = -math.inf

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._document is not None and self._clock() - self._fetched_at < self._reuse_s:
                return self._document
            document = await fetch_json(self._client, self.uri, self._timeout)
            self._document, self._fetched_at = document, self._clock()
            return document


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
        strict_discovery: bool = False,
        discovery: DiscoveryDocument | None = None,
    ) -> None:
        self._client = client
        self._discovery = discovery or DiscoveryDocument(
            client, discovery_uri, timeout_s=timeout_s, clock=clock
        )
        # Trust-policy issuers: the discovery document must name the issuer exactly and its
        # jwks_uri must be on the issuer's own origin (one fetch feeds keys and issuer check).
        self._strict_discovery = strict_discovery
        self._issuer = issuer
        self._jwks_uri = jwks_uri
        self._discovery_uri = discovery_uri
        self._algorithms = frozenset(algorithms)
        self._ttl_s = ttl_s
        self._cooldown_s = cooldown_s
        self._timeout = httpx.Timeout(timeout_s)
        self._clock = clock
        self._keys: dict[str, tuple[Key, ...]] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._generation = 0  # bumped by every attempt: lets lock waiters skip a duplicate fetch
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._failures = 0  # consecutive failed attempts while no key is cached
        self.last_error: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        client: httpx.AsyncClient,
        discovery: DiscoveryDocument | None = None,
    ) -> KeyCache:
        return cls(
            client,
            issuer=settings.oauth2_issuer,
            jwks_uri=settings.jwks_uri,
            discovery_uri=settings.discovery_uri,
            algorithms=settings.oauth2_algorithms,
            ttl_s=settings.jwks_cache_ttl_s,
            cooldown_s=settings.jwks_refresh_cooldown_s,
            timeout_s=settings.jwks_fetch_timeout_s,
            discovery=discovery,
        )

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def start(self) -> None:
        """Fetch the keys in the background, retrying with backoff until some are cached."""
        if not self._keys and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.create_task(self._recover(), name="jwks-recovery")

    async def get(self, kid: str, alg: str) -> Key:
        """The key for ``kid`` usable with ``alg``; refetch once (rate-limited) when unknown."""
        if not self._keys:
            self.start()
            await self._refresh_if_due()
        elif self._is_stale():
            self.prefetch()  # serve the cached keys meanwhile
        key = self._find(kid, alg)
        if key is None and self._keys and (self._is_due() or self._lock.locked()):
            await self._refresh_if_due()
            key = self._find(kid, alg)
        if key is not None:
            return key
        if not self._keys:
            raise KeysUnavailableError(
                "The issuer's signing keys cannot be fetched right now; retry shortly.",
                retry_after_s=self.retry_after_s(),
            )
        if kid in self._keys:
            raise InvalidTokenError(
                f"The issuer publishes no {alg} key under this key id.", reason="key_alg"
            )
        raise InvalidTokenError(
            "The token was signed with a key the issuer does not publish.", reason="unknown_kid"
        )

    def _find(self, kid: str, alg: str) -> Key | None:
        return next((k for k in self._keys.get(kid, ()) if usable_for(k, alg)), None)

    async def aclose(self) -> None:
        for name in ("_background", "_recovery"):
            task = getattr(self, name)
            setattr(self, name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- refresh policy -------------------------------------------------------------------

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._ttl_s

    def _interval(self) -> float:
        """Between attempts: the cooldown once keys are cached, the backoff while none are."""
        if self._keys:
            return self._cooldown_s
        backoff = RECOVERY_BACKOFF_S * RECOVERY_GROWTH ** min(max(0, self._failures - 1), 32)
        return min(backoff, self._cooldown_s)

    def _due_in(self) -> float:
        if self._attempted_at is None:
            return 0.0
        return max(0.0, self._interval() - (self._clock() - self._attempted_at))

    def _is_due(self) -> bool:
        return self._due_in() <= 0.0

    def retry_after_s(self) -> int:
        """Whole seconds until the next fetch attempt is due (at least 1)."""
        return max(1, math.ceil(self._due_in()))

    async def _recover(self) -> None:
        while not self._keys:
            await self._refresh_if_due()
            if not self._keys:
                await asyncio.sleep(max(self._due_in(), 0.05))

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
                self._failures += 1
                logger.warning(
                    "signing keys refresh failed; keeping %d cached key(s): %s",
                    len(self._keys),
                    exc,
                )
            else:
                self._keys, self._fetched_at, self.last_error = keys, self._clock(), None
                self._failures = 0
                logger.info("signing keys refreshed: %d key(s)", sum(map(len, keys.values())))
            finally:
                self._generation += 1

    # -- fetching -------------------------------------------------------------------------

    async def _fetch(self) -> dict[str, tuple[Key, ...]]:
        uri = self._jwks_uri or await self._discover()
        document = await self._get_json(uri)
        keys = parse_jwks(document, self._algorithms)
        if not keys:
            raise KeyFetchError(f"{uri} holds no usable signing key")
        return keys

    async def _discover(self) -> str:
        document = await self._discovery.get()
        issuer = document.get("issuer")
        named = issuer if self._strict_discovery else str(issuer).rstrip("/")
        ours = self._issuer if self._strict_discovery else self._issuer.rstrip("/")
        if not isinstance(issuer, str) or named != ours:
            raise KeyFetchError(f"discovery document names issuer {issuer!r}, not ours")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str) or not is_secure_url(uri):
            raise KeyFetchError("discovery document has no usable https jwks_uri")
        if self._strict_discovery and not same_origin(uri, self._issuer):
            raise KeyFetchError(
                f"discovery document's jwks_uri {uri!r} is not on the issuer's host; set "
                "jwks_uri in the trust policy if that is intended"
            )
        self._jwks_uri = uri  # discovered once per process
        return uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        return await fetch_json(self._client, url, self._timeout)


async def fetch_json(client: httpx.AsyncClient, url: str, limits: httpx.Timeout) -> dict[str, Any]:
    """GET a JSON object from the issuer: 200 only, size-capped, the whole fetch time-bounded."""
    try:
        async with (
            asyncio.timeout(limits.read),
            client.stream("GET", url, timeout=limits) as response,
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
        return parse_json_object(bytes(body), max_bytes=MAX_DOCUMENT_BYTES)
    except UnsafeInputError as exc:
        raise KeyFetchError(f"GET {url}: {exc}") from None


def same_origin(url: str, other: str) -> bool:
    """Same scheme, host and port (hosts compared as httpx normalises them)."""
    try:
        a, b = httpx.URL(url), httpx.URL(other)
    except httpx.InvalidURL:
        return False
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def parse_jwks(document: dict[str, Any], algorithms: Collection[str]) -> dict[str, tuple[Key, ...]]:
    """Usable public signing keys by kid (several per kid when types differ); odd ones skipped."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        return {}
    keys: dict[str, list[Key]] = {}
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
            key = JWKRegistry.import_key(public)
        except (JoseError, ValueError, TypeError) as exc:
            logger.warning("skipping signing key %r: %s", kid, exc)
            continue
        weakness = key_weakness(key)
        if weakness:
            logger.warning("skipping signing key %r: %s", kid, weakness)
            continue
        keys.setdefault(kid, []).append(key)
    return {kid: tuple(found) for kid, found in keys.items()}


def key_weakness(key: Key) -> str | None:
    """Why RFC 7518 / RFC 8037 forbid signing with ``key``, or None when it is strong enough."""
    curve = key.get("crv")
    if key.key_type == "RSA":
        bits: int = key.raw_value.key_size  # type: ignore[union-attr]
        return (
            f"RSA key of {bits} bits (at least {MIN_RSA_BITS} required)"
            if bits < MIN_RSA_BITS
            else None
        )
    allowed = {"EC": {"P-256", "P-384", "P-521"}, "OKP": {"Ed25519", "Ed448"}}.get(key.key_type)
    if allowed is not None and curve not in allowed:
        return f"{key.key_type} curve {curve!r} is not a signing curve this API accepts"
    return None


def usable_for(key: Key, alg: str) -> bool:
    """The key's type (and curve) fit ``alg``, and the key names no other ``alg``."""
    needed = ALGORITHM_KEYS.get(alg)
    if needed is None or key.key_type != needed[0]:
        return False
    curves = needed[1]
    if curves is not None and key.get("crv") not in curves:
        return False
    own = key.get("alg")
    return own is None or own == alg
