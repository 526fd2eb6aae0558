"""Access-token authentication as a FastAPI dependency, declared to OpenAPI as Auth0's
client-credentials flow so Swagger's Authorize button can fetch a token. Tokens come as
``Bearer``, or as ``DPoP`` with a proof (:mod:`cats_dogs_other.api.dpop.binding`).

There is deliberately no setting that skips this; tests replace :func:`require_principal`
through ``app.dependency_overrides`` instead.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2

from cats_dogs_other.api.auth.tokens import Principal
from cats_dogs_other.api.dpop.binding import Credentials, read_credentials
from cats_dogs_other.api.errors import AuthError, InsufficientScopeError
from cats_dogs_other.api.resources import get_resources, get_settings

logger = logging.getLogger(__name__)

SCHEME_NAME = "auth0"
# The real token URL ({issuer}oauth/token) is only known once settings are read; the app
# factory writes it into the OpenAPI document (see app._openapi).
TOKEN_URL_PLACEHOLDER = "oauth/token"  # noqa: S105 - a URL, not a secret


class BearerToken(OAuth2):
    """Reads ``Authorization: Bearer|DPoP <token>``; anything else is a bare challenge."""

    def __init__(self) -> None:
        super().__init__(
            flows=OAuthFlows(
                clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL_PLACEHOLDER)
            ),
            scheme_name=SCHEME_NAME,
            description="Access token from the OAuth2 issuer (Auth0 client credentials). "
            "A DPoP-bound token goes as `Authorization: DPoP <token>` with a `DPoP` proof "
            "header (RFC 9449).",  # code spans: Swagger reads Markdown, <token> would be HTML
            auto_error=False,
        )

    async def __call__(self, request: Request) -> Credentials:  # type: ignore[override]
        return read_credentials(request, get_settings(request))


bearer_token = BearerToken()


async def require_principal(
    request: Request,
    response: Response,
    credentials: Annotated[Credentials, Depends(bearer_token)],
) -> Principal:
    """The verified caller, holding the configured scope. Never logs the token itself."""
    resources = get_resources(request)
    scope = get_settings(request).oauth2_scope
    try:
        principal = await resources.dpop.authenticate(request, credentials, resources.validator)
    except AuthError as exc:
        client_id = getattr(exc, "client_id", None)
        request.state.client_id = client_id
        logger.info("token refused: %s (client %s)", exc.reason, client_id or "unknown")
        raise
    request.state.client_id = principal.client_id
    response.headers.update(resources.dpop.response_headers(credentials))
    if not principal.has_scope(scope):
        logger.info("token refused: insufficient_scope (client %s)", principal.client_id)
        raise InsufficientScopeError(scope, scheme=credentials.scheme)
    return principal
