"""``python -m cats_dogs_other.dev_issuer`` as a real process on a free loopback port."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.dev_issuer.support import AUDIENCE, free_port, token_form


def wait_until_up(base_url: str, process: subprocess.Popen[str], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the issuer exited during start-up"
        try:
            if httpx.get(base_url + "health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the issuer did not answer on {base_url} within {timeout_s} s")


@pytest.fixture
def issuer_process() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEV_ISSUER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "cats_dogs_other.dev_issuer", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(base_url, process)
        yield base_url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def test_cli_serves_tokens_rotates_on_sighup_and_stops_cleanly(
    issuer_process: tuple[str, subprocess.Popen[str]],
) -> None:
    base_url, process = issuer_process
    config = httpx.get(base_url + ".well-known/openid-configuration").json()
    assert config["issuer"] == base_url
    token = httpx.post(config["token_endpoint"], data=token_form())
    assert token.status_code == 200
    [first] = httpx.get(config["jwks_uri"]).json()["keys"]

    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while len(keys := httpx.get(config["jwks_uri"]).json()["keys"]) < 2:
        assert time.monotonic() < deadline, "SIGHUP did not rotate the keys"
        time.sleep(0.05)

    assert keys[1]["kid"] == first["kid"]
    process.terminate()
    output, _ = process.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises the signal so supervisors see it.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Finished server process" in output
    assert "DEVELOPMENT ISSUER - NOT FOR PRODUCTION" in output
    assert f"audience={AUDIENCE}" in output
    assert "rotated signing keys on SIGHUP" in output
    assert token.json()["access_token"] not in output
