"""A real ``redis-server`` on loopback for tests, on a free port, with its own temp directory.

Fixtures (registered for every test directory by ``tests/conftest.py``):

- ``redis_server``: one server per test module (``RedisServer``: ``.url``, ``.unix_url``, ``.port``,
  ``.client()``, ``.stop()``, ``.start()`` to restart it on the same port, ``.flush()``).
- ``redis_url``: its URL, flushed before each test.
- :func:`fake_store`: a loopback server that hangs or answers garbage, for timeout tests.

When ``redis-server`` is not installed the tests skip with a message saying how to install it
(``scripts/install-services.sh``); under ``CI=true`` a missing server is a failure instead.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.services import skip_unless_ci

START_TIMEOUT_S = 10.0
INSTALL_HINT = "redis-server is not installed: run scripts/install-services.sh (apt-get)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_redis_server() -> str:
    """The path of ``redis-server``; skip (or fail under CI=true) when it is absent."""
    path = shutil.which("redis-server")
    if path is None:
        skip_unless_ci(INSTALL_HINT)
    return path


class RedisServer:
    """One ``redis-server`` process, no persistence, ``noeviction`` as production needs."""

    def __init__(self, executable: str, directory: Path, port: int | None = None) -> None:
        self.executable = executable
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The same server through its Unix socket."""
        return f"unix://{self.directory / 'redis.sock'}?db=0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--protected-mode", "yes",
            "--unixsocket", str(self.directory / "redis.sock"),
            "--unixsocketperm", "700",
        ]  # fmt: skip
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.directory / 'redis.log'}")
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """SIGKILL: the records are lost, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        self.client().flushall()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@contextlib.contextmanager
def fake_store(answer: bytes | None) -> Iterator[str]:
    """A loopback TCP server that accepts and then never answers (``answer=None``) or answers
    ``answer`` to anything: a hung or garbage-speaking store. Yields its ``redis://`` URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()
