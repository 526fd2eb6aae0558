"""What model answers: for clients pinning behaviour, and operators checking a rollout."""

from __future__ import annotations

from fastapi import APIRouter

from cats_dogs_other.api.dependencies import CurrentPrincipal, InferenceDep
from cats_dogs_other.api.schemas import ModelInfo, Problem

router = APIRouter(tags=["model"])


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={code: {"model": Problem} for code in (401, 403, 503)},
)
async def model_info(principal: CurrentPrincipal, inference: InferenceDep) -> ModelInfo:
    meta = inference.metadata
    return ModelInfo(
        name=meta.name,
        version=meta.version,
        classes=list(meta.classes),
        input_size=list(meta.input_size),
        sha256=inference.sha256,
    )
