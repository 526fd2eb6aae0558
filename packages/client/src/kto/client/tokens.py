"""Client-credentials access tokens, fetched once and reused until shortly before they expire.

Auth0 counts machine-to-machine tokens against the tenant's quota, so a CI job that asks for a
token per request runs out. Tokens are therefore cached in memory and, when asked, in a file
that only its owner can read (a later step of the same job reuses it). The cache key names the
token endpoint, client, audience and scope, never the secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from kto.client.errors import TokenError
from kto.client.text import from_server
from kto.client.urls import redact, redact_text, require_secure

# A token is renewed this long before its expiry, so that it cannot expire in flight.
DEFAULT_EXPIRY_MARGIN_S = 60.0
# What an issuer that sends no expires_in is assumed to mean (Auth0 always sends it).
DEFAULT_LIFETIME_S = 300.0
FILE_MODE = 0o600


@dataclass(frozen=True)
class AccessToken:
    """A token and when it stops being usable (seconds since the epoch)."""

    value: str
    token_type: str
    expires_at: float
    scope: str | None = None

    def usable(self, now: float, margin_s: float) -> bool:
        return now + margin_s < self.expires_at


class TokenCache(Protocol):
    """Where tokens are kept between requests (and, for a file, between processes)."""

    def load(self, key: str) -> AccessToken | None: ...

    def store(self, key: str, token: AccessToken) -> None: ...


class MemoryCache:
    """Tokens for the life of this process."""

    def __init__(self) -> None:
        self._tokens: dict[str, AccessToken] = {}

    def load(self, key: str) -> AccessToken | None:
        return self._tokens.get(key)

    def store(self, key: str, token: AccessToken) -> None:
        self._tokens[key] = token


class FileCache:
    """A JSON file of tokens, mode 0600, replaced atomically.

    A file that others may read or that belongs to someone else is neither read nor trusted:
    it is rewritten with the right mode on the next store. Unreadable or corrupt files count as
    empty, since the worst outcome is one more token request.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._memory = MemoryCache()

    def load(self, key: str) -> AccessToken | None:
        if (token := self._memory.load(key)) is not None:
            return token
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            token = AccessToken(**entry)
        except TypeError:
            return None
        self._memory.store(key, token)
        return token

    def store(self, key: str, token: AccessToken) -> None:
        self._memory.store(key, token)
        now = time.time()
        entries = {
            k: v
            for k, v in self._read().items()
            if isinstance(v, dict)
            and isinstance(v.get("expires_at"), int | float)
            and v["expires_at"] > now
        }
        entries[key] = asdict(token)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".token-cache-")
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(entries, handle)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _read(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return {}
        with os.fdopen(fd, encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            private = stat.S_IMODE(info.st_mode) & 0o077 == 0
            if not private or info.st_uid != os.getuid():
                return {}
            try:
                data = json.load(handle)
            except (ValueError, UnicodeDecodeError):
                return {}
        return data if isinstance(data, dict) else {}


class TokenSource(Protocol):
    """Anything that hands out access tokens (client credentials today, others later)."""

    def token(self, *, renew: bool = False) -> AccessToken: ...


class ClientCredentials:
    """The OAuth 2.0 client-credentials grant as Auth0 expects it.

    Everything goes in the form body (``client_id``, ``client_secret``, ``audience``): Auth0
    reads the audience only from the body. ``token_request_auth`` lets another scheme (such as
    DPoP, which signs the token request too) add its headers to the token request; when it has
    a ``token_type`` (``"DPoP"``), an answer with another type is refused, never cached or used.
    ``token_url`` must be https unless its host is loopback or ``allow_insecure_http`` is set:
    the request carries the client secret.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        audience: str,
        scope: str | None = None,
        cache: TokenCache | None = None,
        expiry_margin_s: float = DEFAULT_EXPIRY_MARGIN_S,
        token_request_auth: httpx.Auth | None = None,
        clock: Callable[[], float] = time.time,
        allow_insecure_http: bool = False,
    ) -> None:
        require_secure(token_url, "The token URL", allow_insecure_http=allow_insecure_http)
        self._http = http
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._audience = audience
        self._scope = scope
        self._cache = cache if cache is not None else MemoryCache()
        self._margin_s = expiry_margin_s
        self._token_request_auth = token_request_auth
        self._clock = clock
        self._lock = threading.Lock()
        self.requests_made = 0
        identity = "\n".join((token_url, client_id, audience, scope or ""))
        self.cache_key = hashlib.sha256(identity.encode()).hexdigest()

    def token(self, *, renew: bool = False) -> AccessToken:
        """A usable token: the cached one unless it is close to expiry or ``renew`` is set."""
        with self._lock:
            cached = None if renew else self._cache.load(self.cache_key)
            if cached is not None and cached.usable(self._clock(), self._margin_s):
                return cached
            token = self._request()
            self._cache.store(self.cache_key, token)
            return token

    def _request(self) -> AccessToken:
        body = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "audience": self._audience,
        }
        if self._scope:
            body["scope"] = self._scope
        self.requests_made += 1
        requested_at = self._clock()
        try:
            response = self._http.post(
                self.token_url,
                data=body,
                headers={"Accept": "application/json"},
                auth=self._token_request_auth or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise TokenError(
                f"The token endpoint {redact(self.token_url)} could not be reached: "
                f"{from_server(redact_text(str(exc)))}."
            ) from None
        token = _parse_token_response(response, redact(self.token_url), requested_at)
        expected = getattr(self._token_request_auth, "token_type", None)
        if expected and token.token_type.lower() != expected.lower():
            raise TokenError(
                f"The token endpoint {redact(self.token_url)} answered the {expected} token "
                f"request with a {from_server(token.token_type, 20)} token: {expected} is not "
                f"enabled for this API or client, or a proxy dropped the {expected} header. "
                f"Enable it, call the issuer directly, or drop --dpop (CDO_DPOP)."
            )
        return token


def _parse_token_response(response: httpx.Response, url: str, requested_at: float) -> AccessToken:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        detail = ""
        if isinstance(body, dict):
            error = body.get("error_description") or body.get("error")
            detail = f": {from_server(error)}" if isinstance(error, str) else ""
        raise TokenError(
            f"The token endpoint {url} answered {response.status_code}{detail}. "
            "Check the client id, client secret and audience."
        )
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise TokenError(f"The token endpoint {url} sent no access_token.")
    lifetime = body.get("expires_in")
    lifetime_s = float(lifetime) if isinstance(lifetime, int | float) else DEFAULT_LIFETIME_S
    scope = body.get("scope")
    return AccessToken(
        value=value,
        token_type=str(body.get("token_type") or "Bearer"),
        expires_at=requested_at + lifetime_s,
        scope=scope if isinstance(scope, str) else None,
    )
