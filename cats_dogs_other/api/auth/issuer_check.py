"""Start-up check that ``OAUTH2_ISSUER`` is exactly what the issuer calls itself.

Why: tokens carry the issuer's own name in ``iss`` and are compared with ``OAUTH2_ISSUER``
character for character, so ``https://TENANT.auth0.com`` for ``https://TENANT.auth0.com/``
(the classic Auth0 slip) gives a server that looks healthy and refuses every token. The
discovery document (``/.well-known/openid-configuration``) states the issuer's name, so it is
fetched at start-up -- also when ``OAUTH2_JWKS_URI`` is set -- and compared exactly:

* a mismatch keeps the process running (the issuer side may be the one to fix) but makes
  ``/ready`` answer 503 with a reason naming both values; it is logged once, as an error, and
  re-checked every ``recheck_s`` until the two agree;
* an unreachable or unreadable discovery document is a warning: the server goes on (some
  issuers publish only a key set) and re-checks in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from cats_dogs_other.api.auth.jwks import DiscoveryDocument, KeyFetchError
from cats_dogs_other.api.settings import Settings

logger = logging.getLogger(__name__)


class IssuerCheck:
    """Owned by the lifespan; ``problem`` is the readiness reason while the names differ."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        issuer: str,
        discovery_uri: str,
        timeout_s: float = 5.0,
        recheck_s: float = 30.0,
        discovery: DiscoveryDocument | None = None,
    ) -> None:
        self._issuer = issuer
        # Shared with the key cache when the lifespan passes one: one fetch feeds both.
        self._discovery = discovery or DiscoveryDocument(client, discovery_uri, timeout_s=timeout_s)
        self._recheck_s = max(recheck_s, 0.1)
        self._task: asyncio.Task[None] | None = None
        self._reported: str | None = None  # the last state logged: logged once per change
        self.problem: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        client: httpx.AsyncClient,
        discovery: DiscoveryDocument | None = None,
    ) -> IssuerCheck:
        return cls(
            client,
            issuer=settings.oauth2_issuer,
            discovery_uri=settings.discovery_uri,
            timeout_s=settings.jwks_fetch_timeout_s,
            recheck_s=settings.jwks_refresh_cooldown_s,
            discovery=discovery,
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="issuer-check")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check(self) -> bool:
        """One comparison; True once the discovery document names our issuer exactly."""
        try:
            document = await self._discovery.get()
        except KeyFetchError as exc:
            self._report(
                "unreachable",
                logging.WARNING,
                "issuer discovery document unavailable (%s); OAUTH2_ISSUER not checked, going on",
                exc,
            )
            return False
        named = document.get("issuer")
        if named == self._issuer:
            self.problem = None
            self._report("match", logging.INFO, "OAUTH2_ISSUER matches the issuer's discovery")
            return True
        self.problem = (
            f"OAUTH2_ISSUER is {self._issuer!r} but the issuer's discovery document names "
            f"{named!r}; tokens carry the latter, so every token is refused (set OAUTH2_ISSUER "
            "to exactly that value)"
        )
        self._report("mismatch", logging.ERROR, "%s", self.problem)
        return False

    async def _run(self) -> None:
        while True:
            if await self.check():
                return
            await asyncio.sleep(self._recheck_s)

    def _report(self, state: str, level: int, message: str, *args: object) -> None:
        if state == self._reported or (state == "match" and self._reported is None):
            self._reported = state
            return
        self._reported = state
        logger.log(level, message, *args)
