"""Start, probe, measure and stop the benchmark's subprocesses (all on 127.0.0.1)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.workload import REPO_ROOT

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_json(port: int, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    body = json.dumps(payload).encode() if payload is not None else None
    status, data = http_request(
        port, method, path, body=body, headers={"Content-Type": "application/json"}
    )
    if status != 200:
        raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
    return json.loads(data)


@dataclass
class Process:
    """A server subprocess with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log: IO[bytes]

    def wait_until(self, path: str, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.popen.returncode}); see {self.log_path}"
                )
            try:
                if http_request(self.port, "GET", path, timeout=2.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready on {path} after {timeout_s:.0f} s")

    def rss_mib(self) -> float:
        """Resident memory of the process and all its descendants (uvicorn workers)."""
        return sum(rss_mib(pid) for pid in [self.popen.pid, *descendants(self.popen.pid)])

    def peak_rss_mib(self) -> float:
        """Peak resident memory (VmHWM) of the process and its descendants, summed."""
        return sum(rss_mib(pid, "VmHWM") for pid in self.pids())

    def pids(self) -> list[int]:
        return [self.popen.pid, *descendants(self.popen.pid)]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its descendants so far."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self.log.close()


def start(name: str, args: list[str], env: dict[str, str], port: int, log_dir: Path) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    popen = subprocess.Popen(
        [sys.executable, *args], cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
    )
    return Process(name, popen, port, log_path, log)


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children_file = Path(f"/proc/{parent}/task/{parent}/children")
        try:
            children = [int(c) for c in children_file.read_text().split()]
        except OSError:
            children = []
        found.extend(children)
        frontier.extend(children)
    return found


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """VmRSS (or another /proc/PID/status size, e.g. VmHWM) in MiB (psutil is no dependency)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime from /proc/PID/stat (all threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, wall seconds) of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle
    return busy / os.sysconf("SC_CLK_TCK"), time.monotonic()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
