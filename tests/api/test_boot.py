"""``python boot.py`` as a real process: loopback issuer (discovery + JWKS over HTTP), real
token, real upload, JSON logs on stdout, and the token nowhere in the output."""

from __future__ import annotations

import json

import httpx
import pytest
from joserfc import jwt

from cats_dogs_other.testing.issuer import valid_claims
from tests.api.support import start_boot


@pytest.mark.process
def test_boot_serves_uploads_with_json_logs(
    repo_root, loopback_issuer, rsa_keys, tiny_model, images, tmp_path
) -> None:
    claims = valid_claims(iss=loopback_issuer, sub="boot-client@clients", azp="boot-client")
    token = jwt.encode({"alg": "RS256", "kid": "key-1"}, claims, rsa_keys["key-1"])
    api, base = start_boot(
        repo_root,
        loopback_issuer,
        tiny_model,
        tmp_path,
        LOG_LEVEL="DEBUG",
        TF_CPP_MIN_LOG_LEVEL="0",  # TensorFlow's C++ lines must arrive as JSON too
    )
    try:
        api.wait_http(base + "/ready", timeout_s=90, interval_s=0.3)
        response = httpx.post(
            base + "/upload",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "boot-test-1"},
            files={"file": ("red.png", images["red"], "image/png")},
        )
        assert response.status_code == 200
        assert response.json()["prediction"] == "Cat"
    finally:
        code = api.stop(grace_s=30)
    output, errors = api.output(), (tmp_path / "stderr.log").read_text()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells the truth.
    assert code in (0, -15)
    assert token not in output
    assert token.rsplit(".", 1)[1] not in output
    assert errors == ""  # stderr is kept for a start-up failure's one sentence
    entries = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    access = [e for e in entries if e.get("request_id") == "boot-test-1"]
    assert access == [{**access[0], "route": "/upload", "status": 200, "client_id": "boot-client"}]
    messages = {e["message"] for e in entries}
    assert {"Application startup complete.", "Application shutdown complete."} <= messages
