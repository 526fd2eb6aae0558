"""Response bodies, for the OpenAPI document and a stable public contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = "OK"
    state_store: str = Field(
        default="in-process",
        description="the shared state store as last seen by its background check: in-process "
        "(no STATE_URL), ok, unavailable or misconfigured",
    )


class Readiness(BaseModel):
    status: str
    reason: str | None = None


class Prediction(BaseModel):
    prediction: str = Field(description="the answer: one of the served model's classes")
    values: list[float] = Field(description="probabilities in the order of GET /model's classes")
    probabilities: dict[str, float] = Field(description="the same probabilities by class name")


def declare_classes(schema: dict[str, Any], classes: Sequence[str]) -> None:
    """Write the served model's classes into the OpenAPI document: ``prediction`` is an enum
    of them and ``probabilities`` has exactly them as keys, so clients can generate types."""
    prediction = schema.get("components", {}).get("schemas", {}).get("Prediction")
    if prediction is None:
        return
    props = prediction["properties"]
    props["prediction"]["enum"] = list(classes)
    props["values"]["minItems"] = props["values"]["maxItems"] = len(classes)
    props["probabilities"].pop("additionalProperties", None)
    props["probabilities"]["properties"] = {c: {"type": "number"} for c in classes}
    props["probabilities"]["required"] = list(classes)
    props["probabilities"]["additionalProperties"] = False


class ModelInfo(BaseModel):
    name: str
    version: str
    classes: list[str]
    input_size: Annotated[list[int], Field(min_length=2, max_length=2)]  # [height, width]
    sha256: str = Field(description="sha256 of the served file (`file`)")
    file: str = Field(description="the file the API serves, e.g. model.int8.onnx")
    precision: Literal["f32", "int8"] = Field(
        description="the served file's precision (INFERENCE_PRECISION, auto by default)"
    )
    precision_reason: str = Field(
        description="why this precision: e.g. 'model.int8.onnx present but not the default: "
        "the rule was not met' (metadata.json int8 record)",
    )
    backend: str = Field(description="the runtime serving it: onnx, openvino or keras")
    files: dict[str, str] = Field(
        description="sha256 of each model file by name: the served one and, in a model folder, "
        "the others beside it (model.keras, which model.onnx was exported from)"
    )


class Problem(BaseModel):
    detail: str
    part: int | None = None
    code: str | None = None  # e.g. "model_output_invalid" on a 500
    limit: str | None = Field(
        default=None, description="429, or 422 for a batch above it: the client's limit"
    )
