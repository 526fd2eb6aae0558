"""Real processes on loopback: the development issuer and the API started through ``boot.py``.

Each process gets a free 127.0.0.1 port and a log file under ``.reliability/logs`` (git-ignored),
runs in its own session so the harness can end exactly what it started, and is always stopped
by the context manager, even when a check fails half-way.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from reliability import procfs

ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = ROOT / ".reliability"
LOG_DIR = WORK_DIR / "logs"
LOOPBACK = "127.0.0.1"
AUDIENCE = "https://cats-dogs-other.local"
CLIENT_ID, CLIENT_SECRET = "dev-client", "dev-secret"  # the dev issuer's published defaults


class StackError(RuntimeError):
    """A process of the stack did not start, or died; the message carries its log tail."""


def free_port() -> int:
    """A port the OS just handed out on loopback (tiny reuse race, acceptable for a harness)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Process:
    """A child process in its own session, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{time.strftime('%H%M%S')}-{os.getpid()}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, "process not started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None if still running after ``timeout`` seconds."""
        assert self.popen is not None
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL to this process's own session if it lingers."""
        if self.popen is None:
            return
        if self.alive():
            self.signal(signal.SIGTERM)
            if self.wait(grace_s) is None:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.wait(5)
        else:
            # Reap leftovers of the session (uvicorn workers) if the leader is already gone.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def died(self) -> StackError:
        code = self.popen.poll() if self.popen else None
        return StackError(
            f"{self.name} exited (code {code}); log {self.log_path}:\n{log_tail(self.log_path)}"
        )


def _wait_http(proc: Process, url: str, *, timeout_s: float, want: int = 200) -> float:
    """Poll ``url`` until it answers ``want``; returns the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout_s
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise proc.died()
            with suppress(httpx.HTTPError):
                if client.get(url).status_code == want:
                    return time.monotonic() - start
            time.sleep(0.1)
    raise StackError(
        f"{proc.name}: {url} did not answer {want} within {timeout_s:.0f} s; "
        f"log {proc.log_path}:\n{log_tail(proc.log_path)}"
    )


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH2_", "JWKS_"))}
    env.update({"PYTHONUNBUFFERED": "1", "NO_PROXY": "*", "no_proxy": "*"})
    env.update(extra)
    return env


class Issuer:
    """The development issuer (``python -m cats_dogs_other.dev_issuer``) on a free port."""

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}/"
        self.jwks_url = self.url + ".well-known/jwks.json"
        env = _child_env(
            {
                "DEV_ISSUER_HOST": LOOPBACK,
                "DEV_ISSUER_PORT": str(self.port),
                "DEV_ISSUER_LOG_LEVEL": "WARNING",
            }
        )
        argv = [sys.executable, "-m", "cats_dogs_other.dev_issuer", "--port", str(self.port)]
        self.process = Process("issuer", argv, env)

    def __enter__(self) -> Self:
        self.process.start()
        try:
            _wait_http(self.process, self.url + ".well-known/openid-configuration", timeout_s=60)
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
        self.process = Process("api", [sys.executable, "boot.py"], _child_env(settings))
        self.startup_s = 0.0

    def start(self, *, wait_ready: bool = True, timeout_s: float = 180) -> Self:
        """Start and wait for /health (and /ready unless the check wants a cold failure)."""
        self.process.start()
        try:
            self.startup_s = _wait_http(self.process, self.url + "/health", timeout_s=timeout_s)
            if wait_ready:
                self.startup_s += _wait_http(self.process, self.url + "/ready", timeout_s=60)
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
        if not self.process.alive():
            raise self.process.died()
