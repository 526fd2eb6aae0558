"""Structured request logs and the rule that a token is never logged."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from pythonjsonlogger.json import JsonFormatter

from cats_dogs_other.testing.issuer import FakeIssuer
from tests.api.support import bearer, running_app


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cats_dogs_other.access"]


def test_one_json_line_per_request_with_route_status_latency_client_and_request_id(
    client, module_issuer, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="cats_dogs_other.access")
    response = client.get(
        "/model", headers={**bearer(module_issuer.token()), "X-Request-ID": "req-42.a"}
    )
    assert response.headers["X-Request-ID"] == "req-42.a"  # honoured and echoed
    (record,) = access_records(caplog)
    line = JsonFormatter("%(levelname)s %(name)s %(message)s").format(record)
    entry = json.loads(line)
    assert entry["route"] == "/model"
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert entry["latency_ms"] >= 0
    assert entry["client_id"] == "test-client"
    assert entry["request_id"] == "req-42.a"


def test_request_id_is_generated_when_absent_or_unsafe(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="cats_dogs_other.access")
    generated = client.get("/health").headers["X-Request-ID"]
    assert len(generated) == 32
    unsafe = client.get("/health", headers={"X-Request-ID": "a b\x7f" + "x" * 200})
    assert unsafe.headers["X-Request-ID"] not in {"", "a b"}
    assert " " not in unsafe.headers["X-Request-ID"]
    assert [r.request_id for r in access_records(caplog)] == [  # type: ignore[attr-defined]
        generated,
        unsafe.headers["X-Request-ID"],
    ]


def test_auth_failures_are_logged_with_reason_and_client(client, module_issuer, caplog) -> None:
    caplog.set_level(logging.INFO)
    token = module_issuer.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    assert client.get("/model", headers=bearer(token)).status_code == 401
    (record,) = access_records(caplog)
    assert record.status == 401  # type: ignore[attr-defined]
    assert record.auth_failure == "expired"  # type: ignore[attr-defined]
    assert record.client_id == "test-client"  # type: ignore[attr-defined]


def test_unmatched_routes_are_logged_by_label_not_path(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="cats_dogs_other.access")
    client.get("/secret-probe/../../etc/passwd?token=abc")
    (record,) = access_records(caplog)
    assert record.route == "unmatched"  # type: ignore[attr-defined]
    assert "abc" not in record.getMessage()


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_no_log_record_ever_contains_the_token(
    make_settings, issuer: FakeIssuer, caplog, images, everything_at_debug
) -> None:
    """Every logger at DEBUG, every path a token can take: accepted, refused, unknown key,
    keys unavailable. Neither the token nor its signature may appear in any record."""
    tokens = [
        issuer.token(),
        issuer.token(scope="nothing"),
        issuer.token(exp=int(time.time()) - 999, iat=int(time.time()) - 9999),
        issuer.token("key-1", signing_key="attacker"),
        issuer.token("unknown-kid", signing_key="attacker"),
        issuer.token(aud="https://other.test"),
        issuer.token(padding="x" * 9000),
    ]
    with running_app(make_settings(jwks_refresh_cooldown_s=0), issuer) as client:
        for token in tokens:
            client.get("/model", headers=bearer(token))
            client.post(
                "/upload",
                headers=bearer(token),
                files={"file": ("a.png", images["red"], "image/png")},
            )
        issuer.up = False  # refresh fails, cached keys still serve
        assert client.get("/model", headers=bearer(tokens[0])).status_code == 200
        assert client.get("/model", headers=bearer(tokens[4])).status_code == 401
    with running_app(make_settings(), issuer) as client:  # cold start, issuer down
        assert client.get("/model", headers=bearer(tokens[0])).status_code == 503
    assert len(caplog.records) > 2 * len(tokens)
    formatter = JsonFormatter()
    for record in caplog.records:
        text = formatter.format(record) + repr(record.__dict__)
        for token in tokens:
            assert token not in text
            assert token.rsplit(".", 1)[1] not in text, f"signature logged by {record.name}"


@pytest.mark.process
def test_logging_config_emits_json_at_the_configured_level(repo_root) -> None:
    """What boot.py hands uvicorn (applied in every worker), checked in a fresh process."""
    script = (
        "import logging, logging.config\n"
        "from cats_dogs_other.api.middleware.access_log import logging_config\n"
        "logging.config.dictConfig(logging_config('WARNING'))\n"
        "logging.getLogger('cats_dogs_other.x').info('hidden')\n"
        "logging.getLogger('cats_dogs_other.x').warning('shown', extra={'route': '/x'})\n"
        "logging.getLogger('uvicorn.error').warning('from uvicorn', extra={'color_message': 'x'})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=repo_root, capture_output=True, text=True, check=True
    )
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["message"] for e in entries] == ["shown", "from uvicorn"]
    assert entries[0]["level"] == "WARNING"
    assert entries[0]["route"] == "/x"
    assert entries[1]["logger"] == "uvicorn.error"
    assert "color_message" not in entries[1]
