"""``python -m cats_dogs_other.dev_issuer`` as a real process on a free loopback port."""

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cats_dogs_other.loopback import LOOPBACK, Child, free_port
from tests.dev_issuer.support import AUDIENCE, token_form


@pytest.fixture
def issuer_process(tmp_path: Path) -> Iterator[tuple[str, Child]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEV_ISSUER_")}
    process = Child(
        "issuer",
        [sys.executable, "-m", "cats_dogs_other.dev_issuer", "--port", str(port)],
        env=env,
        log_path=tmp_path / "issuer.log",
    ).start()
    base_url = f"http://{LOOPBACK}:{port}/"
    try:
        process.wait_http(base_url + "health", timeout_s=20, interval_s=0.1)
        yield base_url, process
    finally:
        process.stop(grace_s=10)


@pytest.mark.process
def test_cli_serves_tokens_rotates_on_sighup_and_stops_cleanly(
    issuer_process: tuple[str, Child],
) -> None:
    base_url, process = issuer_process
    config = httpx.get(base_url + ".well-known/openid-configuration").json()
    assert config["issuer"] == base_url
    token = httpx.post(config["token_endpoint"], data=token_form())
    assert token.status_code == 200
    [first] = httpx.get(config["jwks_uri"]).json()["keys"]

    process.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while len(keys := httpx.get(config["jwks_uri"]).json()["keys"]) < 2:
        assert time.monotonic() < deadline, "SIGHUP did not rotate the keys"
        time.sleep(0.05)

    assert keys[1]["kid"] == first["kid"]
    code = process.stop(grace_s=10)
    output = process.output()
    # uvicorn shuts down gracefully, then re-raises the signal so supervisors see it.
    assert code in (0, -signal.SIGTERM)
    assert "Finished server process" in output
    assert "DEVELOPMENT ISSUER - NOT FOR PRODUCTION" in output
    assert f"audience={AUDIENCE}" in output
    assert "rotated signing keys on SIGHUP" in output
    assert token.json()["access_token"] not in output
