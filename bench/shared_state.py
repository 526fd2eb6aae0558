"""The cost of shared state: the API with ``STATE_URL`` and ``RATE_LIMIT`` beside the API without.

Two ``python boot.py`` processes on loopback serve the same model: (c) with its defaults, (s)
with ``STATE_URL`` (a ``redis-server`` started here, no persistence, on loopback) and a
``RATE_LIMIT`` far above what the load reaches, so every request pays the limiter's and, for
DPoP, the replay record's Redis round trips without ever being refused. For each round, each
connection count and each token kind (Bearer; DPoP with a proof signed per request inside the
timed loop), both servers are loaded in turn, the order alternating between rounds so a noisy
neighbour hits both alike. The load generator is Python (asyncio + httpx, a closed loop): wrk
cannot sign a DPoP proof per request.

Targets: p50 of (s) at most 1 ms above (c)'s at one connection (median of the
rounds), and (s)'s req/s at least 0.95x (c)'s at 8 connections.

``python -m bench`` runs it after its rounds when its systems include ``s`` (the default);
``python -m bench.shared_state`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from kto.client.dpop import DPoPKey

from bench.dpop import dpop_token
from bench.harness import start_api
from bench.issuer import AUDIENCE, Issuer, start_issuer
from bench.load import closed_loop, multipart_body
from bench.procs import Server
from bench.workload import bench_image, resolve_model
from cats_dogs_other.loopback import LOOPBACK, Child, free_port
from cats_dogs_other.replicas import redis_argv, redis_ping, require
from tools.procfs import cpu_model, load_average

RAW_DIR = Path(__file__).with_name("results") / "raw"
UNREACHED_LIMIT = "100000000/minute"  # counted on every request, never reached
KINDS = ("Bearer", "DPoP")
SERVERS = {"c": "(c) this API", "s": "(s) + STATE_URL (Redis) + RATE_LIMIT"}


@dataclass
class Sample:
    server: str
    kind: str
    connections: int
    round: int
    requests: int
    errors: int
    error_statuses: dict[str, int]  # e.g. {"503": 3}: a store slower than STATE_TIMEOUT_MS
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # the API process's CPU time per answered request: steadier on a busy machine


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Redis:
    """``redis-server`` on a free loopback port for (s)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = redis_argv(require("redis-server"), self.port, log_dir)
        self.child = Child("redis", argv, env={}, log_path=log_dir / "redis.log").start()
        self.child.wait_until(lambda: redis_ping(self.port), "it answered PING", timeout_s=20)
        self.url = f"redis://{LOOPBACK}:{self.port}/0"

    def stop(self) -> None:
        self.child.stop(10)


def compare(
    issuer: Issuer,
    model_path: Path,
    image: bytes,
    log_dir: Path,
    *,
    rounds: int = 3,
    seconds: float = 10.0,
    connections: tuple[int, ...] = (1, 8),
    server_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the comparison; the samples, the medians and the two targets, as one dict."""
    redis = Redis(log_dir)
    common = {
        "OAUTH2_ISSUER": issuer.url,
        "OAUTH2_AUDIENCE": AUDIENCE,
        "MODEL_PATH": str(model_path),
        "LOG_LEVEL": "WARNING",
        **(server_env or {}),
    }
    shared = {**common, "STATE_URL": redis.url, "RATE_LIMIT": UNREACHED_LIMIT}
    servers: dict[str, Server] = {}
    try:
        for name, env in (("c", common), ("s", shared)):
            servers[name] = start_api(env, free_port(), log_dir, f"api_state_{name}")
            servers[name].wait_until("/ready")  # one at a time: start-ups compete for the cores
        samples = _rounds(issuer, servers, image, rounds, seconds, connections)
    finally:
        for server in servers.values():
            server.stop()
        redis.stop()
    return summarise(samples, rounds=rounds, seconds=seconds)


def _rounds(
    issuer: Issuer,
    servers: dict[str, Server],
    image: bytes,
    rounds: int,
    seconds: float,
    connections: tuple[int, ...],
) -> list[Sample]:
    body, content_type = multipart_body(image)
    key = DPoPKey()
    bound = dpop_token(issuer.url, key)
    samples: list[Sample] = []
    for server in servers.values():  # warm-up: JWKS fetched, pools and Redis connected
        url = f"http://{LOOPBACK}:{server.port}/upload"
        for kind in KINDS:
            headers = _headers(kind, issuer, key, bound, url)
            asyncio.run(closed_loop(url, body, content_type, headers, 4, 2.0))
    for round_no in range(1, rounds + 1):
        order = list(servers) if round_no % 2 else list(reversed(servers))
        for n in connections:
            for kind in KINDS:
                for name in order:
                    url = f"http://{LOOPBACK}:{servers[name].port}/upload"
                    headers = _headers(kind, issuer, key, bound, url)
                    cpu_before = servers[name].cpu_seconds()
                    latencies, errors = asyncio.run(
                        closed_loop(url, body, content_type, headers, n, seconds)
                    )
                    cpu_s = servers[name].cpu_seconds() - cpu_before
                    sample = Sample(
                        name, kind, n, round_no, len(latencies), errors.total(),
                        dict(errors), len(latencies) / seconds,
                        1000 * _quantile(latencies, 0.5), 1000 * _quantile(latencies, 0.99),
                        1000 * cpu_s / max(1, len(latencies) + errors.total()),
                    )  # fmt: skip
                    samples.append(sample)
                    print(
                        f"[bench.shared_state] round {round_no} ({name}) {kind:6} c={n}: "
                        f"{sample.rps:.1f} req/s p50 {sample.p50_ms:.2f} ms "
                        f"p99 {sample.p99_ms:.2f} ms errors {dict(errors) or 0} "
                        f"cpu {sample.cpu_ms:.2f} ms/req",
                        flush=True,
                    )
                    time.sleep(0.5)
    return samples


def _headers(
    kind: str, issuer: Issuer, key: DPoPKey, bound: str, url: str
) -> Callable[[], dict[str, str]]:
    if kind == "Bearer":
        return lambda: {"Authorization": f"Bearer {issuer.token}"}
    target = httpx.URL(url)
    return lambda: {
        "Authorization": f"DPoP {bound}",
        "DPoP": key.proof("POST", target, access_token=bound),
    }


def summarise(samples: list[Sample], *, rounds: int, seconds: float) -> dict[str, Any]:
    medians: dict[str, dict[str, Any]] = {}
    for sample in samples:
        label = f"{sample.server} {sample.kind} c={sample.connections}"
        if label in medians:
            continue
        same = [
            s
            for s in samples
            if (s.server, s.kind, s.connections) == (sample.server, sample.kind, sample.connections)
        ]
        medians[label] = {
            "rps": statistics.median(s.rps for s in same),
            "p50_ms": statistics.median(s.p50_ms for s in same),
            "p99_ms": statistics.median(s.p99_ms for s in same),
            "cpu_ms": statistics.median(s.cpu_ms for s in same),
            "errors": sum(s.errors for s in same),
            "error_statuses": dict(sum((Counter(s.error_statuses) for s in same), Counter())),
        }
    targets = {}
    for kind in KINDS:
        c1, s1 = medians.get(f"c {kind} c=1"), medians.get(f"s {kind} c=1")
        c8, s8 = medians.get(f"c {kind} c=8"), medians.get(f"s {kind} c=8")
        if c1 and s1:
            delta = s1["p50_ms"] - c1["p50_ms"]
            targets[f"{kind}: p50 at 1 connection, (s) - (c) <= +1 ms"] = (
                f"{delta:+.2f} ms",
                delta <= 1.0,
            )
        if c8 and s8:
            ratio = s8["rps"] / c8["rps"]
            targets[f"{kind}: req/s at 8 connections, (s) / (c) >= 0.95"] = (
                f"{ratio:.3f}",
                ratio >= 0.95,
            )
    return {
        "rounds": rounds,
        "seconds_per_point": seconds,
        "samples": [asdict(s) for s in samples],
        "medians": medians,
        "targets": {k: {"measured": v[0], "met": v[1]} for k, v in targets.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    """The section ``python -m bench`` appends to RESULTS.md."""
    lines = [
        "## Shared state: (s) = (c) + STATE_URL (Redis on loopback) + RATE_LIMIT",
        "",
        f"Python closed loop (httpx; a DPoP proof signed per request), "
        f"{result['seconds_per_point']:g} s per point, median of {result['rounds']} "
        f"alternating round(s). RATE_LIMIT={UNREACHED_LIMIT}: counted, never reached.",
        "",
        "| server | token | connections | req/s | p50 ms | p99 ms | server CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in result["medians"].items():
        server, kind, conns = label.split(" ")
        lines.append(
            f"| {SERVERS[server]} | {kind} | {conns[2:]} | {m['rps']:.1f} | {m['p50_ms']:.2f} "
            f"| {m['p99_ms']:.2f} | {m['cpu_ms']:.2f} | {_errors(m)} |"
        )
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for target, value in result["targets"].items():
        lines.append(f"| {target} | {value['measured']} | {'yes' if value['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _errors(median: dict[str, Any]) -> str:
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(median["error_statuses"].items()))
    return f"{median['errors']} ({statuses})" if statuses else str(median["errors"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.shared_state", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per point")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--connections", default="1,8")
    args = parser.parse_args(argv)
    log_dir = RAW_DIR / "shared_state"
    log_dir.mkdir(parents=True, exist_ok=True)
    model_path, model_note = resolve_model(args.model, RAW_DIR)
    issuer = start_issuer(log_dir)
    try:
        result = compare(
            issuer,
            model_path,
            bench_image()[0],
            log_dir,
            rounds=args.rounds,
            seconds=args.seconds,
            connections=tuple(int(c) for c in args.connections.split(",")),
        )
    finally:
        issuer.stop()
    result.update(model=model_note, cpu=cpu_model(), load_average_after=load_average())
    (log_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result), flush=True)
    return 0 if all(v["met"] for v in result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
