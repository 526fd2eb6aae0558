"""API fixtures: RSA keys generated here, the fake issuer, DPoP keys, settings, running apps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import RSAKey

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.testing.images import png
from cats_dogs_other.testing.issuer import AUDIENCE, ISSUER, JWKS_PATH, FakeIssuer
from tests.api.support import override_principal, running_app
from tests.dpop_proofs import ProofSigner
from tests.json_server import json_server


@pytest.fixture(scope="session")
def rsa_keys() -> dict[str, RSAKey]:
    """Generated once per session (RSA generation is slow): two issuer keys and an outsider's."""
    return {
        kid: RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})
        for kid in ("key-1", "key-2", "attacker")
    }


@pytest.fixture
def issuer(rsa_keys: dict[str, RSAKey]) -> FakeIssuer:
    return FakeIssuer(rsa_keys)


@pytest.fixture(scope="module")
def module_issuer(rsa_keys: dict[str, RSAKey]) -> FakeIssuer:
    return FakeIssuer(rsa_keys)


@pytest.fixture(scope="module")
def signer() -> ProofSigner:
    """A DPoP key pair and proof builder."""
    return ProofSigner()


@pytest.fixture(scope="module")
def bound_token(module_issuer: FakeIssuer, signer: ProofSigner) -> str:
    """An access token bound to ``signer``'s key (cnf.jkt)."""
    return module_issuer.token(cnf={"jkt": signer.jkt})


@pytest.fixture(scope="session")
def make_settings(tiny_model: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "oauth2_issuer": ISSUER,
            "oauth2_audience": AUDIENCE,
            "oauth2_jwks_uri": JWKS_PATH.lstrip("/"),
            "model_path": tiny_model,
            "decode_threads": 2,
            "batch_max_wait_ms": 1.0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="module")
def client(
    make_settings: Callable[..., Settings], module_issuer: FakeIssuer
) -> Iterator[TestClient]:
    """One app per module for the rules that do not change the issuer's state."""
    with running_app(make_settings(), module_issuer) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def upload_client(
    make_settings: Callable[..., Settings], module_issuer: FakeIssuer
) -> Iterator[TestClient]:
    """An app whose principal is overridden: upload tests are about bodies, not tokens."""
    settings = make_settings(max_upload_bytes=256 * 1024, max_batch_files=4)
    app = create_app(settings, transport=module_issuer.transport)
    override_principal(app)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    return {
        "red": png((230, 20, 20)),
        "green": png((20, 230, 20)),
        "blue": png((20, 20, 230)),
    }


@pytest.fixture
def loopback_issuer(rsa_keys: dict[str, RSAKey]) -> Iterator[str]:
    """A minimal OpenID provider on 127.0.0.1 serving discovery and JWKS, for the API run as
    a real process (``python boot.py``)."""
    documents: dict[str, object] = {}
    with json_server(documents) as url:
        issuer = url + "/"
        documents["/.well-known/openid-configuration"] = {
            "issuer": issuer,
            "jwks_uri": issuer + ".well-known/jwks.json",
        }
        documents["/.well-known/jwks.json"] = {"keys": [rsa_keys["key-1"].as_dict(private=False)]}
        yield issuer
