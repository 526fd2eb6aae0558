"""How requests are authorised: one object builds the headers of each request.

The API sees only headers, so an authentication scheme is an :class:`httpx.Auth` that adds them
given the request's method and URL. :class:`BearerAuth` sends ``Authorization: Bearer``; a
proof-of-possession scheme (DPoP, RFC 9449) subclasses it, overrides :meth:`headers_for` to add
its per-request proof, and may override :meth:`should_retry` to answer a nonce challenge.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx
from kto.client.tokens import AccessToken, TokenSource


class BearerAuth(httpx.Auth):
    """Adds the current access token; on a 401 ``invalid_token`` renews it once and retries.

    The retry covers a token revoked or rotated out before its ``exp``: one fresh token, one more
    try, never a loop.
    """

    scheme = "Bearer"

    def __init__(self, tokens: TokenSource) -> None:
        self.tokens = tokens

    def headers_for(self, method: str, url: httpx.URL, token: AccessToken) -> dict[str, str]:
        """The headers that authorise one request (``method`` and ``url`` matter to DPoP)."""
        return {"Authorization": f"{self.scheme} {token.value}"}

    def should_retry(self, response: httpx.Response) -> bool:
        """Whether a refused request is worth one more try with a renewed token."""
        challenge = response.headers.get("WWW-Authenticate", "")
        return response.status_code == 401 and 'error="invalid_token"' in challenge

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self.headers_for(request.method, request.url, self.tokens.token()))
        response = yield request
        if self.should_retry(response):
            token = self.tokens.token(renew=True)
            request.headers.update(self.headers_for(request.method, request.url, token))
            yield request
