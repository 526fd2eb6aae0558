"""Response bodies, for the OpenAPI document and a stable public contract."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = "OK"


class Readiness(BaseModel):
    status: str
    reason: str | None = None


class Prediction(BaseModel):
    prediction: str
    values: list[float]


class ModelInfo(BaseModel):
    name: str
    version: str
    classes: list[str]
    input_size: Annotated[list[int], Field(min_length=2, max_length=2)]  # [height, width]
    sha256: str


class Problem(BaseModel):
    detail: str
    part: int | None = None
