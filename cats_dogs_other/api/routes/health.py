"""Liveness and readiness, unauthenticated (probes carry no token)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cats_dogs_other.api.dependencies import ResourcesDep, StateDep
from cats_dogs_other.api.schemas import Health, Readiness

router = APIRouter(tags=["probes"])

# Kubernetes probes time out after 1 s by default: answer before that, let the fetch go on.
READY_KEY_WAIT_S = 0.8


@router.get("/health", response_model=Health)
async def health(state: StateDep) -> Health:
    """Liveness: the process serves HTTP. Touches nothing that could be slow: the state store
    is reported from its last background check, never called here."""
    return Health(state_store=state.health)


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(resources: ResourcesDep) -> JSONResponse:
    """Readiness: not draining, model loaded, batcher running, issuer name right, signing keys
    cached. The state store is not checked: Bearer traffic flows while it is down."""
    reason, retry_after_s = None, 5
    if resources.drain.draining:
        reason = "shutting down (SIGTERM): finishing the requests in flight"
    elif not resources.batcher.running:
        reason = "the inference worker is not running"
    elif resources.issuer_check.problem:
        reason = resources.issuer_check.problem
    else:
        task = resources.keys.prefetch()
        await asyncio.wait({task}, timeout=READY_KEY_WAIT_S)
        if not resources.keys.kids:
            error = resources.keys.last_error or "still fetching"
            reason = f"signing keys unavailable: {error}"
            retry_after_s = resources.keys.retry_after_s()
    if reason is None:
        return JSONResponse(Readiness(status="ready").model_dump(exclude_none=True))
    return JSONResponse(
        Readiness(status="unavailable", reason=reason).model_dump(),
        status_code=503,
        headers={"Retry-After": str(retry_after_s)},
    )
