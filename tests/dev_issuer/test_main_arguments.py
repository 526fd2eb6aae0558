"""``python -m cats_dogs_other.dev_issuer``'s options, in-process: each overrides its DEV_ISSUER_*
variable, unset ones leave the environment's value, and --help lists every variable (the real
process is in test_main.py)."""

from __future__ import annotations

import pytest

from cats_dogs_other.dev_issuer.__main__ import parse_args
from cats_dogs_other.dev_issuer.settings import IssuerSettings


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_ISSUER_PORT", "9100")
    monkeypatch.setenv("DEV_ISSUER_AUDIENCE", "https://from-env.test")
    args = parse_args(["--port", "9200", "--issuer", "http://127.0.0.1:9200/"])
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    assert overrides == {"port": 9200, "url": "http://127.0.0.1:9200/"}
    settings = IssuerSettings(**overrides)
    assert (settings.port, settings.url) == (9200, "http://127.0.0.1:9200/")
    assert settings.audience == "https://from-env.test"


def test_a_port_that_is_not_a_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(["--port", "abc"])
    assert caught.value.code == 2
    assert "--port: invalid int value: 'abc'" in capsys.readouterr().err


def test_help_lists_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for field in IssuerSettings.model_fields:
        assert f"DEV_ISSUER_{field.upper()}" in out, field
