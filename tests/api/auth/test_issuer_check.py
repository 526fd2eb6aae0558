"""OAUTH2_ISSUER against the issuer's own name (discovery), checked at start-up."""

from __future__ import annotations

import logging
import time

from cats_dogs_other.testing.issuer import DISCOVERY_PATH, ISSUER, FakeIssuer
from tests.api.support import running_app

LOGGER = "cats_dogs_other.api.auth.issuer_check"


def wait_for_ready(client, status: int, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/ready")
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_missing_trailing_slash_keeps_the_server_up_but_not_ready(
    make_settings, issuer: FakeIssuer, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    unslashed = ISSUER.rstrip("/")
    settings = make_settings(oauth2_issuer=unslashed, jwks_refresh_cooldown_s=0.1)
    with running_app(settings, issuer) as client:
        ready = wait_for_ready(client, 503)
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert repr(unslashed) in reason and repr(ISSUER) in reason
        assert client.get("/health").status_code == 200  # the process keeps running
        time.sleep(0.5)  # several re-checks
        assert client.get("/ready").status_code == 503
        errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
        assert len(errors) == 1, "the mismatch is logged once"
        assert "OAUTH2_ISSUER" in errors[0].getMessage()

        issuer.discovery_issuer = unslashed  # fixed on the issuer side, no restart
        assert wait_for_ready(client, 200).status_code == 200


def test_discovery_is_checked_even_with_a_configured_jwks_uri(make_settings, issuer) -> None:
    issuer.discovery_issuer = "https://elsewhere.test/"
    with running_app(make_settings(), issuer) as client:  # OAUTH2_JWKS_URI is set here
        ready = wait_for_ready(client, 503)
        assert "https://elsewhere.test/" in ready.json()["reason"]
    assert any(r.url.path == DISCOVERY_PATH for r in issuer.requests)


def test_unreachable_discovery_is_a_warning_and_the_server_goes_on(
    make_settings, issuer: FakeIssuer, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    issuer.discovery_up = False
    with running_app(make_settings(), issuer) as client:
        assert wait_for_ready(client, 200).status_code == 200
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert warnings and "not checked" in warnings[0].getMessage()


def test_one_discovery_fetch_feeds_the_keys_and_the_issuer_check(
    make_settings, issuer: FakeIssuer
) -> None:
    with running_app(make_settings(oauth2_jwks_uri=None), issuer) as client:
        assert wait_for_ready(client, 200).status_code == 200
        token = issuer.token()
        assert client.get("/model", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    paths = [r.url.path for r in issuer.requests]
    assert paths.count(DISCOVERY_PATH) == 1, paths
