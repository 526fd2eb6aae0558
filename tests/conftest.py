"""Fixtures shared by every test directory. Keep this light: no TensorFlow import here."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real redis-server fixtures for every test directory (tests/support/redis_server.py).
from tests.support.redis_server import redis_server, redis_url  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]


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
    from kto.inference.testing import save_tiny_model

    directory = tmp_path_factory.mktemp("tiny-model")
    return save_tiny_model(directory, input_size=(32, 32), onnx=True).parent
