"""How requests are authorised: one object builds the headers of each request.

The API sees only headers, so an authentication scheme is an :class:`httpx.Auth` that adds them
given the request's method and URL. :class:`BearerAuth` sends ``Authorization: Bearer``. A
proof-of-possession scheme (DPoP, RFC 9449: :mod:`kto.client.dpop`) subclasses it:
:meth:`headers_for` adds the per-request proof (it gets the method, the URL and the token),
:meth:`observe` sees every answer (to keep a server's latest nonce), and
:meth:`retry_same_token` answers a ``use_dpop_nonce`` challenge. Its token requests get their
proof through ``ClientCredentials(token_request_auth=...)``.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx
from kto.client.tokens import AccessToken, TokenSource


class BearerAuth(httpx.Auth):
    """Adds the current access token, and retries a refused request at most once.

    A 401 ``invalid_token`` (a token revoked or rotated out before its ``exp``) gets one fresh
    token; :meth:`retry_same_token` may ask for one more try with the same token instead.
    """

    scheme = "Bearer"

    def __init__(self, tokens: TokenSource) -> None:
        self.tokens = tokens

    def headers_for(self, method: str, url: httpx.URL, token: AccessToken) -> dict[str, str]:
        """The headers that authorise one request."""
        return {"Authorization": f"{self.scheme} {token.value}"}

    def renew_token(self, response: httpx.Response) -> bool:
        """Whether the token itself was refused, so a new one is worth one more try."""
        challenge = response.headers.get("WWW-Authenticate", "")
        return response.status_code == 401 and 'error="invalid_token"' in challenge

    def retry_same_token(self, response: httpx.Response) -> bool:
        """Whether to try once more with the same token (Bearer: never)."""
        return False

    def observe(self, response: httpx.Response) -> None:
        """Sees every answer before the retry decision (Bearer: nothing to learn)."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.tokens.token()
        request.headers.update(self.headers_for(request.method, request.url, token))
        response = yield request
        self.observe(response)
        if self.renew_token(response):
            token = self.tokens.token(renew=True)
        elif not self.retry_same_token(response):
            return
        request.headers.update(self.headers_for(request.method, request.url, token))
        response = yield request
        self.observe(response)
