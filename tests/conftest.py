"""Fixtures shared by every test directory. Keep this light: no TensorFlow import here."""

from __future__ import annotations

from pathlib import Path

import pytest

from cats_dogs_other.core.paths import REPO_ROOT

# The real redis-server fixtures for every test directory (tests/support/redis_server.py).
from tests.support.redis_server import redis_server, redis_url  # noqa: F401

PROCESS_FIXTURES = frozenset({"redis_server"})
"""Fixtures that start a process: the tests using them are marked ``process``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)


@pytest.fixture(autouse=True)
def _outside_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a GitHub job these are set, and the client would pick --auth github-actions."""
    for name in ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny model folder from the wheel (red -> Cat, green -> Dog, blue -> Other):
    model.keras and its export model.onnx, so it is served by ONNX Runtime like the bundled one."""
    from cats_dogs_other.testing.tiny_model import save_tiny_model

    directory = tmp_path_factory.mktemp("tiny-model")
    return save_tiny_model(directory, input_size=(32, 32), onnx=True).parent


TINY_COLOURS = ((220, 20, 20), (20, 200, 30), (20, 30, 220), (160, 60, 40), (50, 60, 170))
"""Red, green, blue and two mixed colours: what the tiny model's int8 copy is checked on."""


@pytest.fixture(scope="session")
def tiny_int8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model folder with model.onnx and its int8 copy model.int8.onnx, quantized by the
    training command's code on colour photos (the tiny model has no backbone, so its head is
    quantized too: there would be nothing left to quantize otherwise)."""
    from cats_dogs_other.testing.tiny_model import save_tiny_model, solid_colour_png
    from cats_dogs_other.train.quantize import INT8_FILE, quantize_onnx

    folder = save_tiny_model(tmp_path_factory.mktemp("tiny-int8"), onnx=True).parent
    photos = folder / "photos"
    photos.mkdir()
    for i, (r, g, b) in enumerate(TINY_COLOURS * 4):
        shade = (max(0, r - 7 * i), max(0, g - 7 * i), max(0, b - 7 * i))
        (photos / f"{i}.png").write_bytes(solid_colour_png(shade))
    quantize_onnx(folder, sorted(photos.iterdir()), folder / INT8_FILE, keep_head_f32=False)
    record_int8(folder, passed=True, ratio=1.82)
    return folder


def record_int8(folder: Path, *, passed: bool, ratio: float | None) -> bool:
    """metadata.json ``int8`` for the folder's model.int8.onnx, written by ``train quantize``'s
    code from a verdict given here (the gate and the bench speed are not run)."""
    from kto.inference.model import file_sha256

    from cats_dogs_other.train.reporting.int8 import write_decision

    record = {
        "file": "model.int8.onnx",
        "sha256": file_sha256(folder / "model.int8.onnx"),
        "from": {"file": "model.onnx", "sha256": file_sha256(folder / "model.onnx")},
        "champion_gate": {"passed": passed},
        "speed": None if ratio is None else {"ratio": ratio},
    }
    return write_decision(folder, record)
