"""The real stack (``python -m cats_dogs_other.stack``) on free loopback ports, started once.

Everything here goes over real HTTP: the development issuer and the API run as child
processes of the stack supervisor, exactly as ``make run`` starts them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import CODESPACE, DPOP_NONCES, E2EModel, StackProcess


@pytest.fixture(scope="session")
def e2e_model(request: pytest.FixtureRequest) -> E2EModel:
    """The tiny colour model by default (fast, known answers); E2E_MODEL_PATH to use another,
    e.g. E2E_MODEL_PATH=cats_dogs_other/model for the bundled model."""
    if override := os.environ.get("E2E_MODEL_PATH"):
        path = Path(override).resolve()
        assert path.exists(), f"E2E_MODEL_PATH={override} does not exist"
        return E2EModel(path, red=None)
    tiny: Path = request.getfixturevalue("tiny_model")
    return E2EModel(tiny, red="Cat")


@pytest.fixture(scope="session")
def stack(e2e_model: E2EModel) -> Iterator[StackProcess]:
    """One stack for every end-to-end test; stopped with Ctrl-C at the end."""
    yield from _running_stack(e2e_model, {})


@pytest.fixture(scope="session")
def codespaces_stack(e2e_model: E2EModel) -> Iterator[StackProcess]:
    """The stack as `make run` starts it inside GitHub Codespaces (the variables it sets)."""
    yield from _running_stack(e2e_model, CODESPACE)


@pytest.fixture(scope="session")
def nonce_stack(e2e_model: E2EModel) -> Iterator[StackProcess]:
    """The stack with the API demanding DPoP nonces (DPOP_NONCES=true)."""
    yield from _running_stack(e2e_model, DPOP_NONCES)


def _running_stack(e2e_model: E2EModel, env: dict[str, str]) -> Iterator[StackProcess]:
    process = StackProcess(e2e_model.path, **env)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
