"""Typed ``Annotated`` dependencies: what a route may ask for, resolved from the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from kto.inference import Inference

from cats_dogs_other.api.auth.security import require_principal
from cats_dogs_other.api.auth.tokens import Principal
from cats_dogs_other.api.resources import Resources, get_resources, get_settings
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.state import StateStore


# ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, two thread hops per
# request for what is an attribute read.
async def _settings(request: Request) -> Settings:
    return get_settings(request)


async def _resources(request: Request) -> Resources:
    return get_resources(request)


async def _inference(request: Request) -> Inference:
    return get_resources(request).inference


async def _state(request: Request) -> StateStore:
    return get_resources(request).state


SettingsDep = Annotated[Settings, Depends(_settings)]
ResourcesDep = Annotated[Resources, Depends(_resources)]
InferenceDep = Annotated[Inference, Depends(_inference)]
CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
StateDep = Annotated[StateStore, Depends(_state)]
