"""`make run`'s secretless flow: a GitHub Actions job's OIDC token, minted by the development
issuer's GitHub stand-in, accepted by the API through the trust policy the stack writes."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.e2e.support import CLASSES, StackProcess

FIRST = "export ACTIONS_ID_TOKEN_REQUEST_URL="


def secretless_commands(stack: StackProcess) -> list[str]:
    start = next(i for i, line in enumerate(stack.lines) if line.startswith(FIRST))
    return stack.lines[start : start + 5]


def run_in_bash(commands: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDO_", "ACTIONS_ID_TOKEN"))}
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(commands)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_printed_client_command_classifies_without_a_secret(stack: StackProcess) -> None:
    export, client, *_ = secretless_commands(stack)
    assert "--auth github-actions" in client and "secret" not in client
    result = run_in_bash([export, client + " --format json"])
    assert result.returncode == 0, result.stderr
    assert '"ok": true' in result.stdout
    assert any(name in result.stdout for name in CLASSES)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_printed_curl_commands_classify_without_a_secret(stack: StackProcess) -> None:
    export, _, comment, get_token, classify = secretless_commands(stack)
    assert comment == "# or by hand:"
    result = run_in_bash([export, get_token, classify])
    assert result.returncode == 0, result.stderr
    assert '"prediction"' in result.stdout
