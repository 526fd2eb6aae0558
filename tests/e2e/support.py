"""Helpers for the end-to-end tests: the stack as a process, images, free ports."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cats_dogs_other.api.dpop_proofs import ProofSigner

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Press Ctrl-C to stop."
READY_TIMEOUT_S = 240.0
AUDIENCE = "https://cats-dogs-other.local"
CLASSES = ("Cat", "Dog", "Other")
# The API demanding DPoP server nonces (RFC 9449 section 8).
DPOP_NONCES = {
    "DPOP_NONCES": "true",
    "DPOP_NONCE_SECRET": "e2e-nonce-secret-e2e-nonce-secret-0123",
}
# What GitHub Codespaces sets in a codespace's environment.
CODESPACE = {
    "CODESPACE_NAME": "fluffy-space-robot-5g4x",
    "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def png(colour: tuple[int, int, int], size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class E2EModel:
    """The model the API serves; ``red`` is what it must answer for a red image, if known."""

    path: Path
    red: str | None


class StackProcess:
    """``python -m cats_dogs_other.stack`` with its output captured line by line."""

    def __init__(self, model: Path, **extra_env: str) -> None:
        self.api_port, self.issuer_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.issuer_url = f"http://127.0.0.1:{self.issuer_port}/"
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("DEV_ISSUER_", "OAUTH2_", "JWKS_", "MODEL_"))
        }
        env.update(
            API_PORT=str(self.api_port),
            ISSUER_PORT=str(self.issuer_port),
            MODEL_PATH=str(model),
            JWKS_REFRESH_COOLDOWN_S="1",  # lets the rotation test refetch keys quickly
            TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONUNBUFFERED="1",
            **extra_env,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cats_dogs_other.stack"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                self._ready.set()
        self._ready.set()  # EOF: let waiters notice the exit

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        if not self._ready.wait(timeout_s) or self.process.poll() is not None:
            self.stop()
            tail = "\n".join(self.lines[-40:])
            pytest.fail(f"the stack did not come up within {timeout_s:.0f} s:\n{tail}")

    def printed_commands(self) -> list[str]:
        """The two curl commands of the banner, as printed."""
        return [line for line in self.lines if line.startswith(("TOKEN=$(curl ", "curl -s http"))]

    def interrupt(self, timeout_s: float = 60) -> int:
        """Ctrl-C, as a person would press it; returns the supervisor's exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout_s)
        finally:
            self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def token(
        self,
        client_id: str = "dev-client",
        secret: str = "dev-secret",  # noqa: S107
        *,
        dpop: ProofSigner | None = None,
    ) -> str:
        """A client-credentials token, requested the way the README shows it; DPoP-bound to
        ``dpop``'s key when given."""
        config = httpx.get(self.issuer_url + ".well-known/openid-configuration").json()
        endpoint = config["token_endpoint"]
        headers = {"DPoP": dpop.proof("POST", endpoint)} if dpop else {}
        response = httpx.post(
            endpoint,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "audience": AUDIENCE,
            },
            headers=headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == ("DPoP" if dpop else "Bearer")
        token: str = response.json()["access_token"]
        return token
