"""Fixtures for the development issuer: the real app, its lifespan, an in-process client."""

import os
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from cats_dogs_other.dev_issuer import IssuerSettings, create_app
from tests.dev_issuer.support import AUDIENCE, LOOPBACK_CLIENT


@pytest.fixture(autouse=True)
def _no_issuer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults under test must not depend on the caller's environment."""
    for name in list(os.environ):
        if name.startswith("DEV_ISSUER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings() -> IssuerSettings:
    return IssuerSettings(url="http://127.0.0.1:9999", audience=AUDIENCE)


@pytest.fixture
def client(settings: IssuerSettings) -> Iterator[TestClient]:
    """Requests appear to come from loopback, like the stack's own calls."""
    with TestClient(create_app(settings), client=LOOPBACK_CLIENT) as test_client:
        yield test_client
