"""Secretless CI: the access token is the job's own GitHub Actions OIDC token.

A job with ``permissions: id-token: write`` finds ``ACTIONS_ID_TOKEN_REQUEST_URL`` and
``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` in its environment; ``GET $URL&audience=AUD`` with
``Authorization: bearer $TOKEN`` answers ``{"value": "<jwt>"}``, a token GitHub signs for this
job, repository and audience. The API trusts it by its claim policy (docs/github-actions.md), so
the job needs no client secret. The token lives about 5 minutes: it is kept in memory only (never
in a file or a log) and asked for again before it expires.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

import httpx
from kto.client.errors import ConfigurationError, TokenError
from kto.client.tokens import AccessToken

REQUEST_URL = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 - a variable name
GITHUB_ACTIONS, CLIENT_CREDENTIALS, AUTO = "github-actions", "client-credentials", "auto"
AUTH_MODES = (AUTO, CLIENT_CREDENTIALS, GITHUB_ACTIONS)
# Renewed this long before exp: GitHub's tokens live about 300 s.
EXPIRY_MARGIN_S = 60.0
FALLBACK_LIFETIME_S = 300.0
PERMISSION_HINT = "give the job `permissions: id-token: write` (see docs/github-actions.md)"


def resolve_auth(mode: str, client_secret: str | None, environ: Mapping[str, str]) -> str:
    """``auto`` is ``github-actions`` inside a job that may mint tokens and has no secret."""
    if mode not in AUTH_MODES:
        raise ConfigurationError(f"--auth must be one of {', '.join(AUTH_MODES)}, not {mode!r}.")
    if mode != AUTO:
        return mode
    return GITHUB_ACTIONS if environ.get(REQUEST_URL) and not client_secret else CLIENT_CREDENTIALS


class GitHubActionsTokens:
    """A :class:`~kto.client.tokens.TokenSource` of the job's OIDC tokens for one audience."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        request_url: str,
        request_token: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        separator = "&" if "?" in request_url else "?"
        self._url = request_url + separator + urlencode({"audience": audience})
        self._request_token = request_token
        self._clock = clock
        self._token: AccessToken | None = None

    @classmethod
    def from_environment(
        cls, http: httpx.Client, audience: str, environ: Mapping[str, str]
    ) -> GitHubActionsTokens:
        url, token = environ.get(REQUEST_URL), environ.get(REQUEST_TOKEN)
        if not url or not token:
            raise TokenError(
                f"{REQUEST_URL} and {REQUEST_TOKEN} are not both set: {PERMISSION_HINT}."
            )
        return cls(http, request_url=url, request_token=token, audience=audience)

    def token(self, *, renew: bool = False) -> AccessToken:
        now = self._clock()
        if renew or self._token is None or not self._token.usable(now, EXPIRY_MARGIN_S):
            self._token = self._request(now)
        return self._token

    def _request(self, now: float) -> AccessToken:
        headers = {"Authorization": f"bearer {self._request_token}"}
        try:
            response = self._http.get(self._url, headers=headers)
        except httpx.HTTPError as exc:
            raise TokenError(f"The Actions token service could not be reached: {exc}.") from None
        if response.status_code != 200:
            raise TokenError(
                f"The Actions token service answered {response.status_code}; {PERMISSION_HINT}."
            )
        try:
            value = response.json().get("value")
        except (ValueError, AttributeError):
            value = None
        if not isinstance(value, str) or value.count(".") != 2:
            raise TokenError("The Actions token service answered no token (no 'value').")
        return AccessToken(value, "Bearer", expires_at=_expiry(value, now))


def _expiry(token: str, now: float) -> float:
    """The token's own ``exp`` (read, not verified: the API verifies), or 5 minutes."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
    except (ValueError, AttributeError, IndexError):
        exp = None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return now + FALLBACK_LIFETIME_S
