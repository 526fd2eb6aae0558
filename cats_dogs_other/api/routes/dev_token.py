"""``POST /dev/oauth/token``: the development issuer's token endpoint, relayed on this origin.

Only routed while ``DEV_TOKEN_PROXY_URL`` is set, which the settings accept only for an issuer
on loopback that this API already trusts (``make run`` sets it in Codespaces). There, forwarded
ports are private: a browser's cross-origin POST from Swagger UI to the issuer's forwarded port
carries no GitHub session and is redirected to a sign-in page. Sent to the API's own origin
instead, it rides on the session that opened ``/docs``, and the issuer signs the token with the
issuer URL the API validates. The relay forwards the body and the client's ``Authorization``
unchanged and drops the query string, as Auth0 ignores parameters there.

A DPoP token request cannot be relayed: its proof names the URL it was sent to (``htu``), and
the issuer checks that against its own token endpoint, so a proof for the relay's URL fails
there and a proof for the issuer's URL fails here. Dropping the proof would quietly turn the
request into one for a Bearer token, so it is refused with the URL to call directly.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cats_dogs_other.api.dependencies import ResourcesDep
from cats_dogs_other.api.errors import (
    NotRelayedError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)
from cats_dogs_other.api.resources import get_settings
from cats_dogs_other.core.dev import DEV_TOKEN_PATH

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

MAX_BODY_BYTES = 64 * 1024
FORWARDED_REQUEST_HEADERS = ("content-type", "authorization")
FORWARDED_RESPONSE_HEADERS = ("content-type", "cache-control", "pragma", "www-authenticate")


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLargeError("A token request body is at most 64 KiB.")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(DEV_TOKEN_PATH)
async def dev_token(request: Request, resources: ResourcesDep) -> Response:
    url = get_settings(request).dev_token_proxy_url
    assert url is not None  # the router is only included when it is set
    if "dpop" in request.headers:
        raise NotRelayedError(
            "This development relay cannot forward a DPoP proof: the issuer checks the proof's "
            f"htu against its own URL. Send the request, with a proof for that URL, to {url}."
        )
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED_REQUEST_HEADERS}
    body = await _body(request)
    try:
        upstream = await resources.http_client.post(url, content=body, headers=headers, timeout=5)
    except httpx.HTTPError as exc:
        logger.warning("development issuer unreachable at %s: %s", url, type(exc).__name__)
        raise ServiceUnavailableError(
            f"The development issuer at {url} did not answer; is `make run` still running?",
            retry_after_s=2,
        ) from exc
    kept = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARDED_RESPONSE_HEADERS}
    return Response(upstream.content, status_code=upstream.status_code, headers=kept)
