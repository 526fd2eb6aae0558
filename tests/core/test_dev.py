"""The development defaults: the copies that cannot import them (Bruno, the client's help) agree."""

from __future__ import annotations

from cats_dogs_other.core import dev
from cats_dogs_other.core.paths import REPO_ROOT
from cats_dogs_other.dev_issuer.settings import IssuerSettings


def test_bruno_local_environment_uses_the_development_defaults() -> None:
    text = (REPO_ROOT / "bruno" / "environments" / "local.bru").read_text()

    assert f"baseUrl: http://127.0.0.1:{dev.DEV_API_PORT}\n" in text
    assert f"issuerUrl: http://127.0.0.1:{dev.DEV_ISSUER_PORT}/\n" in text
    assert f"audience: {dev.DEV_AUDIENCE}\n" in text
    assert f"clientId: {dev.DEV_CLIENT_ID}\n" in text
    assert f"clientSecret: {dev.DEV_CLIENT_SECRET}\n" in text
    assert f"noScopeClientId: {dev.NO_SCOPE_CLIENT_ID}\n" in text
    assert f"noScopeClientSecret: {dev.NO_SCOPE_CLIENT_SECRET}\n" in text


def test_client_help_example_uses_the_development_defaults() -> None:
    cli = REPO_ROOT / "packages" / "client" / "src" / "kto" / "client" / "cli.py"
    text = cli.read_text()

    assert f"CDO_AUDIENCE={dev.DEV_AUDIENCE}\n" in text
    assert f"CDO_CLIENT_ID={dev.DEV_CLIENT_ID} CDO_CLIENT_SECRET={dev.DEV_CLIENT_SECRET}" in text


def test_the_development_issuer_serves_them() -> None:
    settings = IssuerSettings()

    assert settings.audience == dev.DEV_AUDIENCE
    assert settings.port == dev.DEV_ISSUER_PORT
    assert settings.clients[dev.DEV_CLIENT_ID].scopes == [dev.SCOPE]
    assert settings.clients[dev.NO_SCOPE_CLIENT_ID].scopes == []


def test_repo_root_holds_the_package() -> None:
    assert (REPO_ROOT / "cats_dogs_other" / "core" / "paths.py").is_file()
