"""The product: classify uploaded images. Authenticated, size-bounded, batched."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from cats_dogs_other.api.classify import predict_many, predict_one
from cats_dogs_other.api.dependencies import CurrentPrincipal, ResourcesDep, SettingsDep
from cats_dogs_other.api.middleware.disconnect import cancel_on_disconnect
from cats_dogs_other.api.rate_limits import Limit, client_key
from cats_dogs_other.api.schemas import Prediction, Problem
from cats_dogs_other.api.uploads import FRAMING_ALLOWANCE, read_files

router = APIRouter(tags=["prediction"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 408, 413, 415, 422, 429, 500, 503)
}


def _multipart_body(many: bool) -> dict[str, Any]:
    """The body is read by uploads.read_files (bounded), so it is declared here by hand."""
    file_schema: dict[str, Any] = {"type": "string", "format": "binary"}
    # maxItems is MAX_BATCH_FILES, a per-deployment setting: enforced (422) but not declared here.
    schema = {"type": "array", "items": file_schema, "minItems": 1} if many else file_schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": schema},
                    }
                }
            },
        }
    }


@router.post(
    "/upload",
    response_model=Prediction,
    responses=_ERRORS,
    openapi_extra=_multipart_body(many=False),
)
async def upload(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    resources: ResourcesDep,
) -> dict[str, Any]:
    """Classify one image (multipart field ``file``): Cat, Dog or Other with probabilities."""
    if resources.limiter is not None:  # charged before the body is read: a 429 costs nothing
        _advertise(response, await resources.limiter.charge(client_key(principal), 1))
    files = await read_files(
        request,
        max_files=1,
        max_file_bytes=settings.max_upload_bytes,
        max_body_bytes=settings.max_upload_bytes + FRAMING_ALLOWANCE,
        timeout_s=settings.upload_timeout_s,
    )
    return await cancel_on_disconnect(request.receive, predict_one(resources, files[0]))


@router.post(
    "/upload/batch",
    response_model=list[Prediction],
    responses=_ERRORS,
    openapi_extra=_multipart_body(many=True),
)
async def upload_batch(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    resources: ResourcesDep,
) -> list[dict[str, Any]]:
    """Classify several images (repeated ``file`` parts); results in request order."""
    limiter, client = resources.limiter, client_key(principal)
    if limiter is not None:  # at least one image left, before the body is read
        await limiter.precheck(client)
    files = await read_files(
        request,
        max_files=settings.max_batch_files,
        max_file_bytes=settings.max_upload_bytes,
        max_body_bytes=settings.max_batch_bytes,
        timeout_s=settings.upload_timeout_s,
    )
    if limiter is not None:  # every image at once, or none, before any decoding
        _advertise(response, await limiter.charge(client, len(files)))
    return await cancel_on_disconnect(request.receive, predict_many(resources, files))


def _advertise(response: Response, limit: Limit | None) -> None:
    """The policy on every counted answer: static, so it costs no store round trip."""
    if limit is not None:
        response.headers["RateLimit-Policy"] = limit.policy_header
