"""The benchmark's servers: harness children on loopback with their port, log and /proc figures."""

from __future__ import annotations

import http.client
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.workload import REPO_ROOT
from cats_dogs_other.loopback import LOOPBACK, Child
from tools import procfs


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Server:
    """A server under test: its process (and workers), the port it serves on."""

    child: Child
    port: int

    @property
    def name(self) -> str:
        return self.child.name

    def wait_until(self, path: str, timeout_s: float = 180.0) -> None:
        self.child.wait_http(f"http://{LOOPBACK}:{self.port}{path}", timeout_s=timeout_s)

    def rss_mib(self) -> float:
        """Resident memory of the process and all its descendants (uvicorn workers)."""
        return procfs.mib(procfs.tree_rss_bytes(self.child.pid))

    def peak_rss_mib(self) -> float:
        """Peak resident memory (VmHWM) of the process and its descendants, summed."""
        return procfs.mib(procfs.tree_peak_rss_bytes(self.child.pid))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its descendants so far."""
        return procfs.tree_cpu_seconds(self.child.pid)

    def wait_idle(
        self, *, below_cores: float = 0.05, every_s: float = 0.25, timeout_s: float = 30.0
    ) -> float:
        """Block until the server uses under ``below_cores`` of CPU (its backlog is served);
        the seconds waited.

        After a point at many connections, a server that serves one request at a time (the
        naive ones) still has the requests the load tool sent before it stopped: at 64
        connections about 64 x 0.1 s of work. Measuring the next server meanwhile gives it
        that much less CPU -- on one core, most of a 10 s point.
        """
        started = time.monotonic()
        before, then = self.cpu_seconds(), started
        while time.monotonic() - started < timeout_s:
            time.sleep(every_s)
            cpu, now = self.cpu_seconds(), time.monotonic()
            if (cpu - before) / (now - then) < below_cores:
                break
            before, then = cpu, now
        return time.monotonic() - started

    def stop(self, grace_s: float = 30.0) -> None:
        self.child.stop(grace_s)


def start(
    name: str,
    args: list[str],
    env: dict[str, str],
    port: int,
    log_dir: Path,
    prefix: Sequence[str] = (),
) -> Server:
    """``python ARGS`` from the repository root, its output in ``log_dir/NAME.log``; ``prefix``
    runs it through a wrapper such as ``taskset -c 0``."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    argv = [*prefix, sys.executable, *args]
    child = Child(name, argv, env=full_env, cwd=REPO_ROOT, log_path=log_dir / f"{name}.log")
    return Server(child.start(), port)
