"""Typed ``Annotated`` dependencies: what a route may ask for, resolved from the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from kto.inference import Inference

from cats_dogs_other.api.resources import Resources, get_resources, get_settings
from cats_dogs_other.api.security import require_principal
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.tokens import Principal


def get_inference(request: Request) -> Inference:
    return get_resources(request).inference


SettingsDep = Annotated[Settings, Depends(get_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
InferenceDep = Annotated[Inference, Depends(get_inference)]
CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
