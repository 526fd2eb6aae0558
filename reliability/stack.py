"""Real processes on loopback: the development issuer and the API started through ``boot.py``.

Each process is a :class:`~cats_dogs_other.loopback.Child` on a free 127.0.0.1 port with a log
file under ``.reliability/logs`` (git-ignored), and is always stopped by the context manager,
even when a check fails half-way.
"""

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from cats_dogs_other.core.dev import DEV_AUDIENCE, DEV_CLIENT_ID, DEV_CLIENT_SECRET
from cats_dogs_other.loopback import LOOPBACK, ROOT, Child, free_port
from tools import procfs

WORK_DIR = ROOT / ".reliability"
LOG_DIR = WORK_DIR / "logs"
AUDIENCE = DEV_AUDIENCE
CLIENT_ID, CLIENT_SECRET = DEV_CLIENT_ID, DEV_CLIENT_SECRET


def log_file(name: str) -> Path:
    return LOG_DIR / f"{name}-{time.strftime('%H%M%S')}-{os.getpid()}.log"


def child(name: str, argv: list[str], env: Mapping[str, str]) -> Child:
    """A child in the harness's environment plus ``env``, logging under LOG_DIR."""
    return Child(name, argv, env=child_env(env), log_path=log_file(name))


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH2_", "JWKS_"))}
    env.update({"PYTHONUNBUFFERED": "1", "NO_PROXY": "*", "no_proxy": "*"})
    env.update(extra)
    return env


class Issuer:
    """The development issuer (``python -m cats_dogs_other.dev_issuer``) on a free port."""

    def __init__(self, *, port: int | None = None, env: Mapping[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}/"
        self.jwks_url = self.url + ".well-known/jwks.json"
        env = {
            "DEV_ISSUER_HOST": LOOPBACK,
            "DEV_ISSUER_PORT": str(self.port),
            "DEV_ISSUER_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        argv = [sys.executable, "-m", "cats_dogs_other.dev_issuer", "--port", str(self.port)]
        self.process = child("issuer", argv, env)

    def __enter__(self) -> Self:
        self.process.start()
        try:
            self.process.wait_http(self.url + ".well-known/openid-configuration", timeout_s=60)
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()

    def token(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> str:
        """A fresh client-credentials access token, exactly as a real client gets one."""
        body = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "audience": AUDIENCE,
        }
        response = httpx.post(self.url + "oauth/token", json=body, timeout=10, trust_env=False)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def rotate(self) -> None:
        """Rotate the issuer's signing key (a new ``kid`` signs from now on)."""
        response = httpx.post(self.url + "admin/rotate-keys", timeout=10, trust_env=False)
        response.raise_for_status()


class Api:
    """The API as deployed: ``python boot.py`` configured only through its environment."""

    def __init__(self, issuer: Issuer, model_path: Path, **env: object) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        settings = {
            "OAUTH2_ISSUER": issuer.url,
            "OAUTH2_AUDIENCE": AUDIENCE,
            "MODEL_PATH": str(model_path),
            "HOST": LOOPBACK,
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        settings.update({k: str(v) for k, v in env.items()})
        self.env = settings
        self.process = child("api", [sys.executable, "boot.py"], settings)
        self.startup_s = 0.0

    def start(self, *, wait_ready: bool = True, timeout_s: float = 180) -> Self:
        """Start and wait for /health (and /ready unless the check wants a cold failure)."""
        started = time.monotonic()
        self.process.start()
        try:
            self.process.wait_http(self.url + "/health", timeout_s=timeout_s, interval_s=0.1)
            if wait_ready:
                self.process.wait_http(self.url + "/ready", timeout_s=60, interval_s=0.1)
            self.startup_s = time.monotonic() - started
        except BaseException:
            self.process.stop()
            raise
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.process.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mib(self) -> float:
        return procfs.mib(procfs.tree_rss_bytes(self.pid))

    def fds(self) -> int:
        return procfs.tree_fd_count(self.pid)

    def check_alive(self) -> None:
        self.process.check_alive()
