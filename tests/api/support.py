"""Helpers for the API tests (imported by conftest.py and the tests): running the real app (in
process, served on loopback, or as ``boot.py``), request headers, decodings. The fake issuer,
token pieces and images are importable from ``cats_dogs_other.testing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.auth.security import require_principal
from cats_dogs_other.api.auth.tokens import Principal
from cats_dogs_other.api.middleware.http_protocols import default_protocol
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.loopback import LOOPBACK, Child, free_port
from cats_dogs_other.testing.issuer import AUDIENCE, SCOPE, FakeIssuer


def start_boot(
    repo_root: Path, issuer: str, model: Path, logs: Path, **env: str
) -> tuple[Child, str]:
    """``python boot.py`` as a real process on a free loopback port, trusting ``issuer``.

    ``env`` adds to the environment; stdout goes to ``logs/stdout.log``, stderr to
    ``logs/stderr.log``. Returns the started process and its base URL.
    """
    port = free_port()
    environment = {
        **os.environ,
        "OAUTH2_ISSUER": issuer,
        "OAUTH2_AUDIENCE": AUDIENCE,
        "MODEL_PATH": str(model),
        "HOST": LOOPBACK,
        "PORT": str(port),
        **env,
    }
    api = Child(
        "api",
        [sys.executable, "boot.py"],
        env=environment,
        cwd=repo_root,
        log_path=logs / "stdout.log",
        stderr_path=logs / "stderr.log",
    ).start()
    return api, f"http://{LOOPBACK}:{port}"


@contextlib.contextmanager
def running_app(settings: Settings, issuer: FakeIssuer) -> Iterator[TestClient]:
    """The real app, lifespan and all, talking to the fake issuer."""
    app = create_app(settings, transport=issuer.transport)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@contextlib.contextmanager
def two_replicas(settings: Settings, issuer: FakeIssuer) -> Iterator[tuple[TestClient, TestClient]]:
    """Two instances of the real app with the same settings (a shared STATE_URL, say), each
    with its own lifespan and connection pool, as two replicas would have."""
    with running_app(settings, issuer) as one, running_app(settings, issuer) as two:
        yield one, two


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def dpop(token: str, proof: str | None) -> dict[str, str]:
    """The headers of a DPoP-bound request (no ``DPoP`` header when ``proof`` is None)."""
    headers = {"Authorization": f"DPoP {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return headers


def override_principal(app: FastAPI, scopes: frozenset[str] = frozenset({SCOPE})) -> None:
    """How tests skip token validation: replace the dependency, never a setting."""
    app.dependency_overrides[require_principal] = lambda: Principal("test-client", scopes)


async def decoding(x: np.ndarray, delay_s: float = 0.0) -> np.ndarray:
    """``x`` as the batcher takes an image: the route's decode step, a thread-pool future in the
    API, which yields to the event loop at least once (``delay_s`` of decoding) before it ends."""
    await asyncio.sleep(delay_s)
    return x


# uvicorn's two HTTP/1.1 parsers, for tests run on each (``HTTP_PROTOCOLS[parser]``).
PARSERS = [
    "h11",
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("httptools") is None, reason="httptools is not installed"
        ),
    ),
]


@dataclass(frozen=True)
class Served:
    """A running uvicorn: its address, and the lifespan's state (the app's resources)."""

    host: str
    port: int
    state: dict[str, Any]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


@contextlib.contextmanager
def serve_app(app: FastAPI, **options: Any) -> Iterator[Served]:
    """Run the app under a real uvicorn on 127.0.0.1 (free port).

    ``options`` go to ``uvicorn.Config`` (e.g. ``forwarded_allow_ips``); ``http`` is the API's
    own protocol unless given (``HTTP_PROTOCOLS["h11"]`` for the h11 one).
    """
    import uvicorn

    options.setdefault("http", default_protocol())
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served("127.0.0.1", port, server.lifespan.state)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def serve(app: FastAPI, **options: Any) -> Iterator[tuple[str, int]]:
    """Run the app under a real uvicorn on 127.0.0.1 (free port); yield (host, port)."""
    with serve_app(app, **options) as served:
        yield served.address
