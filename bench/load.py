"""Load generation (wrk, hey or an httpx closed loop), the /health probe, /metrics scraping."""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.procs import http_request
from cats_dogs_other.loopback import LOOPBACK

LUA_SCRIPT = Path(__file__).with_name("multipart.lua")


@dataclass
class LoadResult:
    connections: int
    duration_s: float
    requests: int
    statuses: dict[int, int]
    timeouts: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def shed(self) -> int:
        return self.statuses.get(503, 0)

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)

    @property
    def errors(self) -> int:
        """Everything that is not a 2xx answer: statuses, client timeouts, socket errors."""
        return self.non_2xx + self.timeouts + self.socket_errors

    @property
    def rps(self) -> float:
        """Successful (2xx) responses per second."""
        return self.ok / self.duration_s if self.duration_s else 0.0


def multipart_body(image: bytes, filename: str = "image.jpg") -> tuple[bytes, str]:
    boundary = f"bench-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return (
        head + image + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def find_load_tool(install: bool = True) -> str:
    """``wrk`` (installed with apt-get when missing and we are root), else ``hey``."""
    if shutil.which("wrk"):
        return "wrk"
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("[bench] installing wrk with apt-get", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True, timeout=300
        )
        if shutil.which("wrk"):
            return "wrk"
    if shutil.which("hey"):
        return "hey"
    raise SystemExit("neither wrk nor hey found: apt-get install wrk (or hey), then rerun")


class LoadGenerator:
    def __init__(self, tool: str, body_path: Path, content_type: str, token: str) -> None:
        self.tool = tool
        self.body_path = body_path
        self.content_type = content_type
        self.token = token

    def run(self, port: int, connections: int, duration_s: float, timeout_s: float) -> LoadResult:
        if self.tool == "wrk":
            return self._wrk(port, connections, duration_s, timeout_s)
        return self._hey(port, connections, duration_s, timeout_s)

    def _wrk(self, port: int, connections: int, duration_s: float, timeout_s: float) -> LoadResult:
        threads = min(2, connections)
        command = [
            "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s",
            "--timeout", f"{timeout_s:g}s", "-s", str(LUA_SCRIPT), f"http://{LOOPBACK}:{port}/upload",
        ]  # fmt: skip
        env = {
            **os.environ,
            "BENCH_BODY": str(self.body_path),
            "BENCH_CONTENT_TYPE": self.content_type,
            "BENCH_TOKEN": self.token,
        }
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=duration_s + timeout_s + 60
        )
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result: {done.stdout[-500:]} {done.stderr[-500:]}")
        data = json.loads(line.removeprefix("BENCHJSON "))
        errors = data["errors"]
        return LoadResult(
            connections=connections,
            duration_s=data["duration_us"] / 1e6,
            requests=data["requests"],
            statuses={int(k): v for k, v in data["statuses"].items()},
            timeouts=errors["timeout"],
            socket_errors=errors["connect"] + errors["read"] + errors["write"],
            p50_ms=data["latency_us"]["p50"] / 1000,
            p99_ms=data["latency_us"]["p99"] / 1000,
        )

    def _hey(self, port: int, connections: int, duration_s: float, timeout_s: float) -> LoadResult:
        command = [
            "hey", "-z", f"{duration_s:g}s", "-c", str(connections), "-t", f"{timeout_s:.0f}",
            "-m", "POST", "-D", str(self.body_path), "-T", self.content_type,
            "-H", f"Authorization: Bearer {self.token}", "-o", "csv",
            f"http://{LOOPBACK}:{port}/upload",
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + timeout_s + 60
        )
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        for row in csv.DictReader(io.StringIO(done.stdout)):
            code = int(row["status-code"])
            statuses[code] = statuses.get(code, 0) + 1
            latencies.append(float(row["response-time"]) * 1000)
        latencies.sort()
        failed = done.stderr.count("Client.Timeout") if done.stderr else 0
        return LoadResult(
            connections=connections,
            duration_s=duration_s,
            requests=len(latencies),
            statuses=statuses,
            timeouts=failed,
            socket_errors=0,
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
        )


async def closed_loop(
    url: str,
    body: bytes,
    content_type: str,
    headers: Callable[[], dict[str, str]],
    connections: int,
    seconds: float,
) -> tuple[list[float], Counter[str]]:
    """``connections`` clients, each sending its next request as soon as the last one returns.

    The latencies of the 200s (seconds) and the statuses of anything else, in ``seconds``.
    """
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:

        async def one_client() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = await client.post(
                    url, content=body, headers={"Content-Type": content_type, **headers()}
                )
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(response.status_code)] += 1

        await asyncio.gather(*(one_client() for _ in range(connections)))
    return latencies, errors


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class HealthProbe:
    """GET /health every ``interval_s`` on one keep-alive connection while the load runs."""

    port: int
    interval_s: float = 0.025
    max_samples: int = 20_000
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="health-probe", daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
        while not self._stop.is_set() and len(self.latencies_ms) < self.max_samples:
            started = time.perf_counter()
            try:
                conn.request("GET", "/health")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
            elapsed = (time.perf_counter() - started) * 1000
            if ok:
                self.latencies_ms.append(elapsed)
            else:
                self.failures += 1
            self._stop.wait(self.interval_s)
        conn.close()

    def p99_ms(self) -> float:
        return percentile(sorted(self.latencies_ms), 99)

    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


def batch_counters(port: int) -> tuple[float, float] | None:
    """(sum, count) of the batch_size histogram from /metrics, or None without it."""
    try:
        status, body = http_request(port, "GET", "/metrics", timeout=5)
    except OSError:
        return None
    if status != 200:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    total = count = None
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "cats_dogs_other_batch_size_sum":
                total = sample.value
            elif sample.name == "cats_dogs_other_batch_size_count":
                count = sample.value
    if total is None or count is None:
        return None
    return total, count
