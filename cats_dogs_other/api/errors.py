"""The API's exceptions and their HTTP answers, mapped in ONE place (:func:`install_handlers`).

Code raises what went wrong; the handlers decide status codes and headers. Authentication errors
follow RFC 6750 section 3 and RFC 9449 section 7.1 (``WWW-Authenticate: Bearer ...`` and
``DPoP ...``). Every message is written for the person reading the response, and none of them
repeats what the client sent (no token echo).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import JSONResponse
from kto.inference import ModelOutputError
from starlette.requests import ClientDisconnect

from cats_dogs_other.api.batching import InferenceTimeoutError, QueueFullError

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

REALM = "cats-dogs-other"
# Accepted schemes and their extra challenge parameters when the app states none.
BEARER_ONLY: Mapping[str, str] = {"Bearer": ""}


class ApiError(Exception):
    """Base: a failure with an HTTP status and a message for the client."""

    status_code = 500
    code: str | None = None  # a stable machine-readable label, sent as ``code`` when set

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, object]:
        """Members of the JSON answer besides ``detail``."""
        return {}


# --- authentication / authorisation (RFC 6750, RFC 9449 section 7.1) -----------------------


class AuthError(ApiError):
    """A request that may not reach the resource. ``reason`` is a short label for logs/metrics.

    The answer carries one challenge per scheme the API accepts (``Bearer``, ``DPoP``); this
    error's own parameters go in the challenge of ``scheme``, the one the client used or must use.
    """

    status_code = 401
    reason = "unauthorized"

    def __init__(self, message: str, *, scheme: str = "Bearer") -> None:
        super().__init__(message)
        self.scheme = scheme

    def error_params(self) -> list[str]:
        """``error=...`` and friends, after ``realm``; none for a bare challenge."""
        return []

    def challenges(self, schemes: Mapping[str, str]) -> list[str]:
        """``schemes`` maps each accepted scheme to its extra parameters (e.g. DPoP's ``algs``)."""
        target = self.scheme if self.scheme in schemes else next(iter(schemes), self.scheme)
        found = []
        for scheme, extra in (schemes or {self.scheme: ""}).items():
            params = [f'realm="{REALM}"']
            if scheme == target:
                params += self.error_params()
            if extra:
                params.append(extra)
            found.append(f"{scheme} " + ", ".join(params))
        return found


def _quoted(message: str) -> str:
    return message.replace("\\", "").replace('"', "'")


class MissingCredentialsError(AuthError):
    """No Authorization header, an empty one, or another scheme: bare challenge, no error code."""

    reason = "missing_credentials"


class InvalidTokenError(AuthError):
    """Expired, badly signed, wrong issuer/audience...: ``error="invalid_token"``."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = "invalid_token",
        client_id: str | None = None,
        scheme: str = "Bearer",
    ) -> None:
        super().__init__(message, scheme=scheme)
        self.reason = reason
        self.client_id = client_id  # known once the signature checked out (expired, wrong aud)

    def error_params(self) -> list[str]:
        return ['error="invalid_token"', f'error_description="{_quoted(self.message)}"']


class InvalidDPoPProofError(AuthError):
    """The DPoP proof is missing or does not hold (RFC 9449 section 7.1)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, scheme="DPoP")
        self.reason = reason

    def error_params(self) -> list[str]:
        return ['error="invalid_dpop_proof"', f'error_description="{_quoted(self.message)}"']


class UseDPoPNonceError(AuthError):
    """The proof must carry the server nonce sent in ``DPoP-Nonce`` (RFC 9449 section 9)."""

    reason = "dpop_nonce"

    def __init__(self, message: str, *, nonce: str) -> None:
        super().__init__(message, scheme="DPoP")
        self.nonce = nonce

    def error_params(self) -> list[str]:
        return ['error="use_dpop_nonce"', f'error_description="{_quoted(self.message)}"']

    def headers(self) -> dict[str, str]:
        return {"DPoP-Nonce": self.nonce}


class InvalidRequestError(AuthError):
    """A malformed authorisation request (e.g. two Authorization headers): 400, RFC 6750 3.1."""

    status_code = 400
    reason = "invalid_request"

    def error_params(self) -> list[str]:
        return ['error="invalid_request"', f'error_description="{_quoted(self.message)}"']


class InsufficientScopeError(AuthError):
    """A valid token without the scope this API requires: 403 ``insufficient_scope``."""

    status_code = 403
    reason = "insufficient_scope"

    def __init__(self, scope: str, *, scheme: str = "Bearer") -> None:
        super().__init__(f"The token lacks the scope {scope!r}.", scheme=scheme)
        self.scope = scope

    def error_params(self) -> list[str]:
        return [
            'error="insufficient_scope"',
            f'error_description="{_quoted(self.message)}"',
            f'scope="{self.scope}"',
        ]


class KeysUnavailableError(AuthError):
    """The issuer's signing keys cannot be fetched and none are cached: try again later."""

    status_code = 503
    reason = "keys_unavailable"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": _seconds(self.retry_after_s)}

    def challenges(self, schemes: Mapping[str, str]) -> list[str]:
        return []


# --- uploads ---------------------------------------------------------------------------------


class UploadError(ApiError):
    """The request body cannot be used; ``part`` is the index of the offending file, if any."""

    status_code = 422

    def __init__(self, message: str, *, part: int | None = None) -> None:
        super().__init__(message)
        self.part = part


class PayloadTooLargeError(UploadError):
    status_code = 413


class UnsupportedMediaError(UploadError):
    """Not multipart/form-data, or a part that is not an image format we read."""

    status_code = 415


class UploadTimeoutError(UploadError):
    """The body did not arrive within ``UPLOAD_TIMEOUT_S``: a trickling client must not hold
    a connection, and the request's memory, for as long as it likes. The connection is closed
    with the answer (RFC 9110 section 15.5.9): the rest of that body is not worth waiting for."""

    status_code = 408

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class BadImageError(UploadError):
    """The wheel refused an image (empty, truncated, too many pixels...)."""


# --- request framing ---------------------------------------------------------------------------


class DuplicateHeaderError(ApiError):
    """A header that must appear once came several times: which one to believe is ambiguous."""

    status_code = 400

    def __init__(self, name: str) -> None:
        super().__init__(f"Send the {name} header once, not several times.")


class NotRelayedError(ApiError):
    """The development token relay cannot forward this request; the message says where to send
    it instead."""

    status_code = 400


# --- the model ---------------------------------------------------------------------------------


class ModelOutputInvalidError(ApiError):
    """The model answered NaN or infinity: no class is made from that, and the fault is ours."""

    status_code = 500
    code = "model_output_invalid"


# --- capacity --------------------------------------------------------------------------------


class ServiceUnavailableError(ApiError):
    """The server is alive but cannot serve this now (queue full, timeout): retry later."""

    status_code = 503

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": _seconds(self.retry_after_s)}


# --- per-client limits (cats_dogs_other.api.rate_limits) ------------------------------------


class RateLimitedError(ApiError):
    """The client used up its limit: 429 with Retry-After and the IETF RateLimit headers."""

    status_code = 429

    def __init__(
        self, message: str, *, limit: str, retry_after_s: float, headers: dict[str, str]
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after_s = retry_after_s
        self._headers = headers

    def headers(self) -> dict[str, str]:
        return {"Retry-After": _seconds(self.retry_after_s), **self._headers}

    def body(self) -> dict[str, object]:
        return {"limit": self.limit}


class BatchOverLimitError(UploadError):
    """A batch larger than the client's whole limit: 422, since waiting would never help."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit

    def body(self) -> dict[str, object]:
        return {"limit": self.limit}


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))


async def _handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    body: dict[str, object] = {"detail": exc.message}
    if exc.code is not None:
        body["code"] = exc.code
    if isinstance(exc, UploadError) and exc.part is not None:
        body["part"] = exc.part
    body.update(exc.body())
    if isinstance(exc, AuthError):
        request.state.auth_failure = exc.reason
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.auth_failure(exc.reason)
    response = JSONResponse(body, status_code=exc.status_code, headers=exc.headers())
    if isinstance(exc, AuthError):
        schemes = getattr(request.app.state, "auth_schemes", None) or BEARER_ONLY
        for challenge in exc.challenges(schemes):
            response.headers.append("WWW-Authenticate", challenge)
    return response


async def _handle_queue_full(request: Request, exc: Exception) -> JSONResponse:
    return await _handle_api_error(request, ServiceUnavailableError(str(exc), retry_after_s=1))


async def _handle_inference_timeout(request: Request, exc: Exception) -> JSONResponse:
    return await _handle_api_error(request, ServiceUnavailableError(str(exc), retry_after_s=5))


async def _handle_model_output(request: Request, exc: Exception) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.model_output_invalid_total.inc()
    logger.error("the model answered NaN or infinity; no class was given")
    return await _handle_api_error(request, ModelOutputInvalidError(str(exc)))


async def _handle_client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    """The client left mid-upload or before its answer: nobody reads this, not a server error."""
    logger.info("client disconnected before its answer was ready")
    return JSONResponse({"detail": "The client closed the connection mid-request."}, 400)


def install_handlers(app: FastAPI) -> None:
    """Register the single mapping from exceptions to HTTP answers."""
    app.add_exception_handler(ApiError, _handle_api_error)
    # The batcher's back-pressure: shed at once with Retry-After rather than let clients time out.
    app.add_exception_handler(QueueFullError, _handle_queue_full)
    app.add_exception_handler(InferenceTimeoutError, _handle_inference_timeout)
    app.add_exception_handler(ClientDisconnect, _handle_client_disconnect)
    app.add_exception_handler(ModelOutputError, _handle_model_output)
