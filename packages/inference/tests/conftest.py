"""Shared fixtures: tiny models saved once per session, and image encoders."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kto.inference import Inference
from PIL import Image

from cats_dogs_other.testing.tiny_model import save_tiny_model

Encode = Callable[..., bytes]


def _encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A ``size=(w, h)`` RGB image of random pixels (JPEGs of it do not compress to nothing)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="session")
def encode() -> Encode:
    """``encode(img, "PNG", **save_params) -> bytes``."""
    return _encode


@pytest.fixture(scope="session")
def noise() -> Callable[..., Image.Image]:
    """``noise((w, h), seed=0) -> Image``."""
    return _noise


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def keras_model_path(models_dir: Path) -> Path:
    return save_tiny_model(models_dir / "keras")


@pytest.fixture(scope="session")
def exported_dir(models_dir: Path) -> Path:
    """A folder with model.keras, its export model.onnx and metadata.json."""
    return save_tiny_model(models_dir / "exported", onnx=True).parent


@pytest.fixture(scope="session")
def h5_model_path(models_dir: Path) -> Path:
    return save_tiny_model(models_dir / "h5", fmt="h5")


@pytest.fixture(scope="session")
def legacy_h5_path(models_dir: Path) -> Path:
    """A course-style model: .h5, 224x224, no metadata.json."""
    return save_tiny_model(
        models_dir / "legacy", fmt="h5", input_size=(224, 224), with_metadata=False
    )


@pytest.fixture(scope="session")
def inference(keras_model_path: Path) -> Inference:
    return Inference(keras_model_path)
