"""Every default can be overridden by the environment (DEV_ISSUER_*)."""

import pytest
from pydantic import ValidationError

from cats_dogs_other.core.dev import DEV_AUDIENCE, DEV_CLIENT_ID, DEV_CLIENT_SECRET, SCOPE
from cats_dogs_other.dev_issuer import ClientConfig, IssuerSettings


def test_defaults_match_the_documented_local_setup() -> None:
    settings = IssuerSettings()

    assert settings.issuer == "http://127.0.0.1:9000/"
    assert settings.token_endpoint == "http://127.0.0.1:9000/oauth/token"
    assert settings.audience == DEV_AUDIENCE
    assert settings.token_lifetime_s == 86_400
    assert settings.clients == {
        DEV_CLIENT_ID: ClientConfig(secret=DEV_CLIENT_SECRET, scopes=[SCOPE]),
        "no-scope-client": ClientConfig(secret="no-scope-secret", scopes=[]),
    }


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_ISSUER_URL", "http://localhost:9100")
    monkeypatch.setenv("DEV_ISSUER_AUDIENCE", "https://api.example")
    monkeypatch.setenv("DEV_ISSUER_TOKEN_LIFETIME_S", "300")
    monkeypatch.setenv("DEV_ISSUER_CLIENTS", '{"ci": {"secret": "x", "scopes": ["a", "b"]}}')

    settings = IssuerSettings()

    assert settings.issuer == "http://localhost:9100/"  # trailing slash added, like Auth0
    assert settings.audience == "https://api.example"
    assert settings.token_lifetime_s == 300
    assert settings.clients == {"ci": ClientConfig(secret="x", scopes=["a", "b"])}


def test_issuer_follows_host_and_port_when_no_url() -> None:
    everywhere = IssuerSettings(host="0.0.0.0", port=9123)  # noqa: S104
    assert everywhere.issuer == "http://127.0.0.1:9123/"
    assert IssuerSettings(host="::1", port=9123).issuer == "http://[::1]:9123/"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "http://issuer.example.com/"}, "must use https unless it is on loopback"),
        ({"port": 0}, "port 0 needs an explicit issuer URL"),
        ({"token_lifetime_s": 0}, "greater than 0"),
    ],
)
def test_unsafe_or_impossible_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IssuerSettings(**kwargs)


def test_https_issuer_anywhere_is_fine() -> None:
    assert IssuerSettings(url="https://issuer.example.com").issuer == "https://issuer.example.com/"
