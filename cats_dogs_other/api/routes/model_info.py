"""What model answers: for clients pinning behaviour, and operators checking a rollout."""

from __future__ import annotations

from fastapi import APIRouter
from kto.inference import Inference
from starlette.concurrency import run_in_threadpool

from cats_dogs_other.api.dependencies import CurrentPrincipal, InferenceDep
from cats_dogs_other.api.schemas import ModelInfo, Problem

router = APIRouter(tags=["model"])

# The files a model folder may hold, in the order they are listed: the exports first.
MODEL_FOLDER_FILES = ("model.int8.onnx", "model.onnx", "model.keras", "model.h5")


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
        file=inference.model_path.name,
        precision=inference.precision,
        precision_reason=inference.precision_reason,
        backend=inference.backend,
        files=await run_in_threadpool(model_files, inference),
    )


def model_files(inference: Inference) -> dict[str, str]:
    """Each model file's sha256 by name; the served one as loaded, the others by the
    model's :class:`~kto.inference.model.FileDigests` (hashed once, or again once changed: the
    files the load checked are not read again).

    A model folder (the served file is one of ``MODEL_FOLDER_FILES``) lists every one of
    them present, so the hash of model.onnx and of the model.keras it came from can both be
    checked against the model card; a file served on its own is listed alone.
    """
    served = inference.model_path
    files = {served.name: inference.sha256}
    if served.name not in MODEL_FOLDER_FILES:
        return files
    for name in MODEL_FOLDER_FILES:
        path = served.with_name(name)
        if name not in files and path.is_file():
            files[name] = inference.digests.sha256(path)
    return files
