"""Fixtures for the reliability harness's own tests: a real loopback keys endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.json_server import json_server

JWKS: dict[str, object] = {"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}


@pytest.fixture(scope="session")
def jwks() -> dict[str, object]:
    """What the stand-in keys endpoint serves."""
    return JWKS


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """A plain stdlib HTTP server on a free loopback port, standing in for the issuer."""
    with json_server({"/.well-known/jwks.json": JWKS}) as url:
        yield url
