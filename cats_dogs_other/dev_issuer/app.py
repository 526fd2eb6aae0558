"""The development issuer's Starlette app. NOT FOR PRODUCTION.

Endpoints follow Auth0's paths so clients, the API and the Bruno collection are configured
exactly as they would be against a tenant: only the issuer URL changes.
"""

import contextlib
import hmac
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cats_dogs_other.core.dpop import DPOP_ALGORITHMS, ProofVerifier
from cats_dogs_other.core.hosts import is_loopback
from cats_dogs_other.core.replay_cache import ReplayCache
from cats_dogs_other.dev_issuer.github import PREFIX as GITHUB
from cats_dogs_other.dev_issuer.github import GitHubTokenService
from cats_dogs_other.dev_issuer.keys import ALGORITHM, KeyRing
from cats_dogs_other.dev_issuer.oauth import AUTH_METHODS, GRANT_TYPE, StarletteAuthorizationServer
from cats_dogs_other.dev_issuer.settings import IssuerSettings
from cats_dogs_other.dev_issuer.tokens import TokenSigner

log = logging.getLogger("cats_dogs_other.dev_issuer")

MAX_BODY_BYTES = 64 * 1024
# Swagger UI (/docs) served by the API on another loopback port calls the token endpoint.
LOOPBACK_ORIGINS = r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def _settings(request: Request) -> IssuerSettings:
    settings: IssuerSettings = request.app.state.settings
    return settings


def _keyring(request: Request) -> KeyRing:
    keyring: KeyRing = request.app.state.keyring
    return keyring


def _server(request: Request) -> StarletteAuthorizationServer:
    server: StarletteAuthorizationServer = request.app.state.oauth
    return server


async def _read_body(request: Request) -> bytes:
    """Count bytes as they arrive: Content-Length may be absent or wrong."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidRequestError("The request body is larger than 64 KiB.", status_code=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_form(body: bytes) -> dict[str, Any]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidRequestError("The form body is not valid UTF-8 url-encoding.") from error
    names = [name for name, _ in pairs]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise InvalidRequestError(f"Parameters must not be repeated: {', '.join(repeated)}.")
    return dict(pairs)


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidRequestError("The body is not valid JSON.") from error
    if not isinstance(data, dict):
        raise InvalidRequestError("The JSON body must be an object of parameters.")
    return data


async def _token_parameters(request: Request) -> dict[str, str]:
    """Auth0 accepts the token request as a form or as JSON; so do we."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (FORM, JSON):
        raise InvalidRequestError(f"Send the parameters as {FORM} or {JSON}.", status_code=415)
    body = await _read_body(request)
    data = _parse_json(body) if media_type == JSON else _parse_form(body)
    parameters: dict[str, str] = {}
    for name, value in data.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRequestError(f"Parameter {name!r} must be a string.")
        parameters[name] = value
    # Like Auth0, parameters are read from the body only: a query-string `audience` is ignored.
    if "grant_type" not in parameters:
        raise InvalidRequestError("Missing 'grant_type' parameter (use client_credentials).")
    return parameters


async def token(request: Request) -> JSONResponse:
    server = _server(request)
    try:
        parameters = await _token_parameters(request)
    except InvalidRequestError as error:
        return server.error_response(error)
    response = server.token_response(request.headers, parameters)
    if response.status_code == 200:
        log.info(
            "issued token client_id=%s audience=%s kid=%s dpop=%s",
            parameters.get("client_id") or "(basic auth)",
            parameters.get("audience"),
            _keyring(request).current.kid,
            "DPoP" in request.headers,
        )
    else:
        log.info("refused token request status=%s", response.status_code)
    return response


async def openid_configuration(request: Request) -> JSONResponse:
    settings = _settings(request)
    scopes = sorted({scope for client in settings.clients.values() for scope in client.scopes})
    return JSONResponse(
        {
            "issuer": settings.issuer,
            "token_endpoint": settings.token_endpoint,
            "jwks_uri": settings.jwks_uri,
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": scopes,
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "subject_types_supported": ["public"],
            "claims_supported": ["iss", "sub", "aud", "iat", "exp", "scope", "gty", "azp", "cnf"],
            "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        }
    )


async def jwks(request: Request) -> JSONResponse:
    # no-cache: a rotation must be visible at once; the API has its own key cache.
    return JSONResponse(_keyring(request).jwks(), headers={"Cache-Control": "no-cache"})


async def rotate_keys(request: Request) -> JSONResponse:
    """Rotate on demand so resource servers' key refresh can be exercised end to end."""
    if not is_loopback(request.client.host if request.client else None):
        return JSONResponse(
            {
                "error": "access_denied",
                "error_description": "Key rotation is only accepted from a loopback address.",
            },
            status_code=403,
        )
    keyring = _keyring(request)
    key = await run_in_threadpool(keyring.rotate)
    log.warning("rotated signing keys: new kid=%s published=%s", key.kid, keyring.kids)
    return JSONResponse({"kid": key.kid, "keys": keyring.kids})


def _github(request: Request) -> GitHubTokenService:
    service: GitHubTokenService = request.app.state.github
    return service


def _loopback_only(request: Request, what: str) -> JSONResponse | None:
    if is_loopback(request.client.host if request.client else None):
        return None
    return JSONResponse(
        {
            "error": "access_denied",
            "error_description": f"{what} is only accepted from a loopback address.",
        },
        status_code=403,
    )


async def github_discovery(request: Request) -> JSONResponse:
    return JSONResponse(_github(request).discovery())


async def github_jwks(request: Request) -> JSONResponse:
    return JSONResponse(_github(request).keyring.jwks(), headers={"Cache-Control": "no-cache"})


async def github_id_token(request: Request) -> JSONResponse:
    """The Actions runtime endpoint: ``?audience=AUD`` with the job's request token."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    expected = _settings(request).github_request_token
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected.encode()):
        return JSONResponse(
            {"message": "Send 'Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN'."},
            status_code=401,
        )
    audiences = request.query_params.getlist("audience")
    if len(audiences) > 1:
        return JSONResponse({"message": "Ask for one audience."}, status_code=400)
    service = _github(request)
    owner = service.job.get("repository_owner", "octo-org")
    audience = audiences[0] if audiences else f"https://github.com/{owner}"
    log.info("issued github-actions id token audience=%s", audience)
    return JSONResponse({"value": service.token(audience)})


async def github_mint(request: Request) -> JSONResponse:
    """Tests: ``{"audience": ..., "claims": {...}, "sub_format": "name"|"ids"}`` -> a token."""
    if refused := _loopback_only(request, "Minting GitHub tokens"):
        return refused
    try:
        body = _parse_json(await _read_body(request))
    except InvalidRequestError as error:
        return JSONResponse(
            {"error": "invalid_request", "error_description": error.description}, 400
        )
    audience, claims = body.get("audience"), body.get("claims", {})
    sub_format = body.get("sub_format", "name")
    if (
        not isinstance(audience, str)
        or not isinstance(claims, dict)
        or sub_format
        not in (
            "name",
            "ids",
        )
    ):
        return JSONResponse(
            {
                "error": "invalid_request",
                "error_description": "Send audience (string), claims (object), sub_format "
                "(name or ids).",
            },
            status_code=400,
        )
    return JSONResponse({"value": _github(request).token(audience, claims, sub_format=sub_format)})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "OK"})


@contextlib.contextmanager
def _rotate_on_sighup(keyring: KeyRing) -> Any:
    """``kill -HUP <pid>`` rotates too (only possible when serving from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        key = keyring.rotate()
        log.warning("rotated signing keys on SIGHUP: new kid=%s", key.kid)

    previous = signal.signal(signal.SIGHUP, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def create_app(settings: IssuerSettings | None = None) -> Starlette:
    """Build the issuer; keys are generated in the lifespan, in memory only."""
    settings = settings or IssuerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keyring = KeyRing(key_size=settings.key_size, published=settings.keys_published)
        app.state.keyring = keyring
        app.state.oauth = StarletteAuthorizationServer(
            clients=settings.clients,
            audience=settings.audience,
            token_endpoint=settings.token_endpoint,
            signer=TokenSigner(
                keyring, issuer=settings.issuer, lifetime_s=settings.token_lifetime_s
            ),
            dpop=ProofVerifier(
                algorithms=DPOP_ALGORITHMS, replay=ReplayCache(settings.dpop_replay_cache_size)
            ),
        )
        app.state.github = GitHubTokenService(
            KeyRing(key_size=settings.key_size, published=settings.keys_published),
            issuer=settings.github_issuer,
            job=settings.github_job,
        )
        log.warning(
            "DEVELOPMENT ISSUER - NOT FOR PRODUCTION: issuer=%s audience=%s clients=%s kid=%s",
            settings.issuer,
            settings.audience,
            ",".join(settings.clients),
            keyring.current.kid,
        )
        with _rotate_on_sighup(keyring):
            yield

    app = Starlette(
        routes=[
            Route("/oauth/token", token, methods=["POST"]),
            Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
            Route("/.well-known/jwks.json", jwks, methods=["GET"]),
            Route("/admin/rotate-keys", rotate_keys, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route(f"{GITHUB}/.well-known/openid-configuration", github_discovery, methods=["GET"]),
            Route(f"{GITHUB}/.well-known/jwks", github_jwks, methods=["GET"]),
            Route(f"{GITHUB}/idtoken", github_id_token, methods=["GET"]),
            Route(f"{GITHUB}/mint", github_mint, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origin_regex=LOOPBACK_ORIGINS,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Requested-With", "DPoP"],
            )
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
