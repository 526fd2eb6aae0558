"""`make run` itself: comes up, prints two working curl commands, stops cleanly on Ctrl-C."""

import json
import re
import shutil
import subprocess

import httpx
import pytest

from tests.e2e.support import CLASSES, E2EModel, StackProcess


def run_printed_commands(commands: list[str]) -> dict:
    """Run them as a person would paste them (curl), or replay them with httpx without curl."""
    get_token, classify = commands
    if shutil.which("curl") and shutil.which("python3"):
        result = subprocess.run(
            ["bash", "-c", f"set -euo pipefail\n{get_token}\n{classify}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        body: dict = json.loads(result.stdout)
        return body
    token_url = re.search(r"curl -s (\S+)", get_token)
    form = dict(item.split("=", 1) for item in re.findall(r"-d (\S+)", get_token))
    upload_url = re.search(r"curl -s (\S+)", classify)
    image = re.search(r"-F file=@(\S+)", classify)
    assert token_url and upload_url and image, commands
    token = httpx.post(token_url.group(1), data=form).json()["access_token"]
    with open(image.group(1).strip("'"), "rb") as file:
        response = httpx.post(
            upload_url.group(1),
            headers={"Authorization": f"Bearer {token}"},
            files={"file": file},
            timeout=30,
        )
    body = response.json()
    return body


@pytest.mark.slow
def test_make_run_prints_working_commands_and_stops_cleanly(e2e_model: E2EModel) -> None:
    stack = StackProcess(e2e_model.path)
    try:
        stack.wait_ready()
        commands = stack.printed_commands()
        assert len(commands) == 2, stack.output
        assert f"http://127.0.0.1:{stack.issuer_port}/oauth/token" in commands[0]
        assert f"http://127.0.0.1:{stack.api_port}/upload" in commands[1]

        body = run_printed_commands(commands)

        assert body["prediction"] in CLASSES  # the sample cat photo, whatever the model
        assert len(body["values"]) == len(CLASSES)
        code = stack.interrupt()
    finally:
        stack.stop()

    assert code == 0, stack.output
    assert "SIGINT received: stopping the API and the issuer" in stack.output
    for name in ("api", "issuer"):
        assert stack.stopped_cleanly(name), stack.output
        assert any(
            line.startswith(f"[{name}]") and "Application shutdown complete" in line
            for line in stack.lines
        ), f"the {name} did not shut down gracefully"
    stack.assert_down()


def test_make_run_fails_clearly_when_the_api_cannot_start(e2e_model: E2EModel) -> None:
    """A misconfigured API: the supervisor exits non-zero, shows why, and stops the issuer."""
    stack = StackProcess(e2e_model.path, MAX_UPLOAD_BYTES="0")
    try:
        code = stack.process.wait(120)
        stack.interrupt()
    finally:
        stack.stop()

    assert code == 1, stack.output
    assert "make run failed: the api exited with status 2" in stack.output
    assert "MAX_UPLOAD_BYTES" in stack.output  # the API's own one-line reason, forwarded
    assert "stopped the issuer" in stack.output
