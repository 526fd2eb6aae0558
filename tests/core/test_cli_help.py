"""``--help`` of every command a user runs: exit 0, the environment variables it reads listed,
and nothing started (the ports the command would open stay closed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cats_dogs_other.loopback import LOOPBACK, free_port

COMMANDS = {
    "boot.py": (["boot.py"], ["OAUTH2_ISSUER", "OAUTH2_AUDIENCE", "MODEL_PATH", "MODEL_URI",
                              "MAX_UPLOAD_BYTES", "MLFLOW_TRACKING_URI", "LOG_LEVEL", "PORT"]),
    "stack": (["-m", "cats_dogs_other.stack"], ["API_PORT", "ISSUER_PORT",
              "STACK_READY_TIMEOUT_S", "CODESPACE_NAME",
              "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN", "DEV_ISSUER_"]),
    "dev issuer": (["-m", "cats_dogs_other.dev_issuer"], ["DEV_ISSUER_CLIENTS", "DEV_ISSUER_URL",
                   "DEV_ISSUER_AUDIENCE", "DEV_ISSUER_PORT", "DEV_ISSUER_TOKEN_LIFETIME_S",
                   "DEV_ISSUER_DPOP_REPLAY_CACHE_SIZE"]),
    "train": (["-m", "cats_dogs_other.train"], ["MLFLOW_TRACKING_URI", "TF_INTRA_OP_THREADS"]),
    "bench": (["-m", "bench"], ["TF_INTRA_OP_THREADS", "API_WORKER_NICE"]),
    "reliability": (["-m", "reliability"], ["OAUTH2_", "JWKS_"]),
}  # fmt: skip


def is_listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((LOOPBACK, port)) == 0


@pytest.mark.process
@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_lists_the_environment_and_starts_nothing(name: str, repo_root: Path) -> None:
    argv, variables = COMMANDS[name]
    if name == "boot.py":  # every setting of the one settings class
        from cats_dogs_other.api.settings import Settings

        variables = [*variables, *(field.upper() for field in Settings.model_fields)]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OAUTH2_")}
    env.update(PORT=str(port), API_PORT=str(port), ISSUER_PORT=str(port), DEV_ISSUER_PORT=str(port))

    completed = subprocess.run(
        [sys.executable, *argv, "--help"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: ")
    assert "environment variables" in completed.stdout
    for variable in variables:
        assert variable in completed.stdout, (name, variable)
    assert not is_listening(port)
