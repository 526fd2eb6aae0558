"""Helpers for the end-to-end tests: the stack as a process, images, free ports."""

from __future__ import annotations

import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kto.inference.metadata import DEFAULT_CLASSES

from cats_dogs_other.core.dev import DEV_AUDIENCE, DEV_CLIENT_ID, DEV_CLIENT_SECRET
from cats_dogs_other.core.paths import REPO_ROOT as REPO_ROOT  # the e2e tests take it from here
from cats_dogs_other.loopback import LOOPBACK, Child, ChildError, free_port
from tests.dpop_proofs import ProofSigner

READY_LINE = "Press Ctrl-C to stop."
READY_TIMEOUT_S = 240.0
AUDIENCE = DEV_AUDIENCE
CLASSES = DEFAULT_CLASSES  # what the served model answers
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


@dataclass(frozen=True)
class E2EModel:
    """The model the API serves; ``red`` is what it must answer for a red image, if known."""

    path: Path
    red: str | None


class StackProcess:
    """``python -m cats_dogs_other.stack`` with its output captured line by line."""

    def __init__(self, model: Path, *args: str, **extra_env: str) -> None:
        self.api_port, self.issuer_port = free_port(), free_port()
        self.api_url = f"http://{LOOPBACK}:{self.api_port}"
        self.issuer_url = f"http://{LOOPBACK}:{self.issuer_port}/"
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
        argv = [sys.executable, "-m", "cats_dogs_other.stack", *args]
        self.process = Child("stack", argv, env=env, echo=self.lines.append, tail_lines=40).start()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        try:
            self.process.wait_until(
                lambda: READY_LINE in self.lines, "it printed its banner", timeout_s=timeout_s
            )
        except ChildError as error:
            self.stop()
            pytest.fail(str(error))

    def printed_commands(self) -> list[str]:
        """The two curl commands of the banner, as printed."""
        return [line for line in self.lines if line.startswith(("TOKEN=$(curl ", "curl -s http"))]

    def interrupt(self, timeout_s: float = 60) -> int | None:
        """Ctrl-C, as a person would press it; returns the supervisor's exit status."""
        return self.process.stop(grace_s=timeout_s, signum=signal.SIGINT)

    def stop(self) -> None:
        self.process.stop(grace_s=60, signum=signal.SIGINT)

    def stopped_cleanly(self, name: str) -> bool:
        """The supervisor reported ``name`` stopped: exit 0, or SIGTERM after its shutdown."""
        pattern = rf"^stopped the {name} \((exit status 0|ended by SIGTERM after shutting down)\)$"
        return re.search(pattern, self.output, re.MULTILINE) is not None

    def assert_down(self) -> None:
        """Nothing answers on the API's port any more."""
        with pytest.raises(httpx.TransportError):
            httpx.get(self.api_url + "/health", timeout=2, trust_env=False)

    def token(
        self,
        client_id: str = DEV_CLIENT_ID,
        secret: str = DEV_CLIENT_SECRET,
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
