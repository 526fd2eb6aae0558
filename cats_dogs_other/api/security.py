"""Bearer-token authentication as a FastAPI dependency, declared to OpenAPI as Auth0's
client-credentials flow so Swagger's Authorize button can fetch a token.

There is deliberately no setting that skips this; tests replace :func:`require_principal`
through ``app.dependency_overrides`` instead.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2

from cats_dogs_other.api.errors import (
    AuthError,
    InsufficientScopeError,
    InvalidRequestError,
    MissingCredentialsError,
)
from cats_dogs_other.api.resources import get_resources, get_settings
from cats_dogs_other.api.tokens import Principal

logger = logging.getLogger(__name__)

SCHEME_NAME = "auth0"
# The real token URL ({issuer}oauth/token) is only known once settings are read; the app
# factory writes it into the OpenAPI document (see app._openapi).
TOKEN_URL_PLACEHOLDER = "oauth/token"  # noqa: S105 - a URL, not a secret


class BearerToken(OAuth2):
    """Reads ``Authorization: Bearer <token>``; anything else is a bare RFC 6750 challenge."""

    def __init__(self) -> None:
        super().__init__(
            flows=OAuthFlows(
                clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL_PLACEHOLDER)
            ),
            scheme_name=SCHEME_NAME,
            description="Access token from the OAuth2 issuer (Auth0 client credentials).",
            auto_error=False,
        )

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        if len(request.headers.getlist("Authorization")) > 1:
            # Which one would a proxy or another server have used? Refuse rather than guess.
            raise InvalidRequestError("Send one Authorization header, not several.")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise MissingCredentialsError("Send an access token: 'Authorization: Bearer <token>'.")
        return token


bearer_token = BearerToken()


async def require_principal(
    request: Request, token: Annotated[str, Depends(bearer_token)]
) -> Principal:
    """The verified caller, holding the configured scope. Never logs the token itself."""
    validator = get_resources(request).validator
    scope = get_settings(request).oauth2_scope
    try:
        principal = await validator.validate(token)
    except AuthError as exc:
        client_id = getattr(exc, "client_id", None)
        request.state.client_id = client_id
        logger.info("token refused: %s (client %s)", exc.reason, client_id or "unknown")
        raise
    request.state.client_id = principal.client_id
    if not principal.has_scope(scope):
        logger.info("token refused: insufficient_scope (client %s)", principal.client_id)
        raise InsufficientScopeError(scope)
    return principal
