"""The model's contract (classes, input size, preprocessing, decision rule).

It lives in ``metadata.json`` next to the model file, written by the training pipeline, so the
wheel never hard-codes what a model expects. A model without it gets
:meth:`ModelMetadata.fallback`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from kto.inference.calibration import (
    Calibration,
    DriftReference,
    parse_calibration,
    parse_drift_reference,
)
from kto.inference.errors import ModelLoadError

METADATA_FILENAME = "metadata.json"
METADATA_FORMAT = "kto-keras-inference/1"
IMAGENET_MEAN = (123.68, 116.779, 103.939)
DEFAULT_CLASSES = ("Cat", "Dog", "Other")
DEFAULT_INPUT_SIZE = (224, 224)
# Preprocessing numbers beyond this overflow nothing in float32 but are no real model's either:
# |x * scale + offset| stays far below float32's range for 0..255 pixels.
MAX_PREPROCESSING_MAGNITUDE = 1e6

PreprocessingMode = Literal["none", "scale", "mean_subtract"]


@dataclass(frozen=True)
class Preprocessing:
    """How raw 0..255 RGB pixels become model input: ``x * scale + offset`` or ``x - mean``."""

    mode: PreprocessingMode = "none"
    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        if self.mode == "scale":
            return {"mode": "scale", "scale": self.scale, "offset": self.offset}
        if self.mode == "mean_subtract":
            return {"mode": "mean_subtract", "mean": list(self.mean)}
        return {"mode": "none"}

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """NumPy version, for callers that feed the model themselves (training, benchmarks)."""
        x = np.asarray(pixels, dtype=np.float32)
        if self.mode == "scale":
            return x * np.float32(self.scale) + np.float32(self.offset)
        if self.mode == "mean_subtract":
            return x - np.asarray(self.mean, dtype=np.float32)
        return x


@dataclass(frozen=True)
class Decision:
    """``min_confidence``: below ``threshold`` the prediction becomes ``fallback``."""

    threshold: float
    fallback: str
    rule: Literal["min_confidence"] = "min_confidence"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "threshold": self.threshold, "fallback": self.fallback}


@dataclass(frozen=True)
class Int8Record:
    """metadata.json ``int8``: which quantized file ``train quantize`` built from which
    ``model.onnx`` and whether it met the rule for being served by default (the champion gate
    against float32 and the bench's speed ratio). ``precision="auto"`` serves ``file`` only
    when ``default`` holds and both hashes match the folder's files."""

    file: str
    sha256: str
    source_sha256: str
    default: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "default": self.default,
        }


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the wheel needs to know about a model, besides its weights."""

    name: str = "cats-dogs-other"
    version: str = "0.0.0"
    classes: tuple[str, ...] = DEFAULT_CLASSES
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    preprocessing: Preprocessing = Preprocessing("mean_subtract", mean=IMAGENET_MEAN)
    decision: Decision | None = None
    resize: Literal["bilinear"] = "bilinear"
    source: str = "fallback"
    """Where this came from: the metadata file's path, or ``"fallback"`` (course contract)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Keys of metadata.json the wheel does not interpret (training details, metrics...)."""
    calibration: Calibration | None = None
    """Applied to the probabilities :meth:`Inference.to_result` returns; None: as the model
    outputs them."""
    drift_reference: DriftReference | None = None
    """Answers on held-out photos, for comparing live traffic with them."""
    int8: Int8Record | None = None
    """The quantized file's record; None: no int8 file was built (or an older folder)."""

    @classmethod
    def fallback(cls, input_size: tuple[int, int] | None = None) -> ModelMetadata:
        """The contract of a model without metadata.json: Cat/Dog/Other, ImageNet mean
        subtraction, 224x224 unless the model's input layer says otherwise."""
        return cls(input_size=input_size or DEFAULT_INPUT_SIZE)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "dict") -> ModelMetadata:
        """Validate a parsed metadata.json; raise :class:`ModelLoadError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise ModelLoadError(f"{source}: metadata must be a JSON object")
        fmt = data.get("format", METADATA_FORMAT)
        if fmt != METADATA_FORMAT:
            raise ModelLoadError(
                f"{source}: unknown metadata format {_short(fmt)}; "
                f"this wheel reads {METADATA_FORMAT!r}"
            )
        classes = _classes(data.get("classes", DEFAULT_CLASSES), source)
        known = {"format", "name", "version", "classes", "input_size", "resize"}
        known |= {"preprocessing", "decision", "calibration", "drift_reference", "int8"}
        return cls(
            name=str(data.get("name", "cats-dogs-other")),
            version=str(data.get("version", "0.0.0")),
            classes=classes,
            input_size=_input_size(data.get("input_size", DEFAULT_INPUT_SIZE), source),
            preprocessing=_preprocessing(data.get("preprocessing", {"mode": "none"}), source),
            decision=_decision(data.get("decision"), classes, source),
            resize=_resize(data.get("resize", "bilinear"), source),
            source=source,
            extra={k: v for k, v in data.items() if k not in known},
            calibration=parse_calibration(data.get("calibration"), classes, source),
            drift_reference=parse_drift_reference(data.get("drift_reference"), classes, source),
            int8=_int8(data.get("int8"), source),
        )

    @classmethod
    def read(cls, path: str | Path) -> ModelMetadata:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelLoadError(f"cannot read model metadata {path}: {exc.strerror}") from exc
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, huge integers
            raise ModelLoadError(
                f"model metadata {path} is not valid JSON: {_short(str(exc), repr_=False)}"
            ) from exc
        except RecursionError as exc:
            raise ModelLoadError(
                f"model metadata {path} is nested too deeply to be metadata.json"
            ) from exc
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The metadata.json document (unknown keys from ``extra`` are kept)."""
        return {
            **self.extra,
            "format": METADATA_FORMAT,
            "name": self.name,
            "version": self.version,
            "classes": list(self.classes),
            "input_size": list(self.input_size),
            "resize": self.resize,
            "preprocessing": self.preprocessing.to_dict(),
            "decision": self.decision.to_dict() if self.decision else None,
            **({"calibration": self.calibration.to_dict()} if self.calibration else {}),
            **({"drift_reference": self.drift_reference.to_dict()} if self.drift_reference else {}),
            **({"int8": self.int8.to_dict()} if self.int8 else {}),
        }

    def write(self, directory: str | Path) -> Path:
        """Write ``metadata.json`` into ``directory`` (next to the model file)."""
        path = Path(directory) / METADATA_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def load_metadata(model_file: Path, model_input_size: tuple[int, int] | None) -> ModelMetadata:
    """metadata.json next to ``model_file``, else the fallback at the model's own input size."""
    path = model_file.parent / METADATA_FILENAME
    if path.is_file():
        return ModelMetadata.read(path)
    return ModelMetadata.fallback(model_input_size)


def _classes(value: Any, source: str) -> tuple[str, ...]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) < 2
        or not all(isinstance(c, str) and c for c in value)
        or len(set(value)) != len(value)
    ):
        raise ModelLoadError(f"{source}: 'classes' must be a list of at least two distinct names")
    return tuple(value)


def _input_size(value: Any, source: str) -> tuple[int, int]:
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ModelLoadError(f"{source}: 'input_size' must be [height, width] in pixels")
    return int(value[0]), int(value[1])


def _number(value: Any, what: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelLoadError(f"{source}: {what} must be a finite number")
    return float(value)


def _bounded(
    value: Any, what: str, source: str, limit: float = MAX_PREPROCESSING_MAGNITUDE
) -> float:
    """A finite number of magnitude at most ``limit``: larger ones overflow the model's input."""
    number = _number(value, what, source)
    if abs(number) > limit:
        raise ModelLoadError(f"{source}: {what} must be between -{limit:g} and {limit:g}")
    return number


def _short(value: Any, limit: int = 60, *, repr_: bool = True) -> str:
    """``value`` for an error message, cut to ``limit`` characters (start-up errors are one
    line of a few hundred characters, whatever the file holds)."""
    text = repr(value) if repr_ else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _preprocessing(value: Any, source: str) -> Preprocessing:
    if not isinstance(value, Mapping):
        raise ModelLoadError(f"{source}: 'preprocessing' must be an object with a 'mode'")
    mode = value.get("mode")
    if mode == "none":
        return Preprocessing("none")
    if mode == "scale":
        return Preprocessing(
            "scale",
            scale=_bounded(value.get("scale"), "preprocessing.scale", source),
            offset=_bounded(value.get("offset", 0.0), "preprocessing.offset", source),
        )
    if mode == "mean_subtract":
        mean = value.get("mean")
        if not isinstance(mean, Sequence) or len(mean) != 3:
            raise ModelLoadError(f"{source}: preprocessing.mean must be [r, g, b]")
        r, g, b = (_bounded(m, "preprocessing.mean", source) for m in mean)
        return Preprocessing("mean_subtract", mean=(r, g, b))
    raise ModelLoadError(
        f"{source}: preprocessing.mode {_short(mode)} is not one of 'none', 'scale', "
        "'mean_subtract'"
    )


def _decision(value: Any, classes: tuple[str, ...], source: str) -> Decision | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get("rule") != "min_confidence":
        raise ModelLoadError(f"{source}: 'decision' must be null or a 'min_confidence' rule")
    threshold = _number(value.get("threshold"), "decision.threshold", source)
    if not 0.0 <= threshold <= 1.0:
        raise ModelLoadError(f"{source}: decision.threshold must be between 0 and 1")
    fallback = value.get("fallback")
    if fallback not in classes:
        raise ModelLoadError(
            f"{source}: decision.fallback {_short(fallback)} is not one of {_short(classes)}"
        )
    return Decision(threshold=threshold, fallback=str(fallback))


def _resize(value: Any, source: str) -> Literal["bilinear"]:
    if value != "bilinear":
        raise ModelLoadError(f"{source}: resize {_short(value)} is not supported (only 'bilinear')")
    return "bilinear"


def _int8(value: Any, source: str) -> Int8Record | None:
    if value is None:
        return None
    hashes = ("sha256", "source_sha256")
    if (
        not isinstance(value, Mapping)
        or not isinstance(value.get("file"), str)
        or not value["file"]
        or "/" in value["file"]
        or not all(isinstance(value.get(k), str) and _is_sha256(value[k]) for k in hashes)
        or not isinstance(value.get("default"), bool)
    ):
        raise ModelLoadError(
            f"{source}: 'int8' must be null or an object with 'file' (a file name), "
            "'sha256' and 'source_sha256' (64 hex digits) and 'default' (true or false)"
        )
    return Int8Record(str(value["file"]), value["sha256"], value["source_sha256"], value["default"])


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
