"""``python -m bench``: (a) ceiling, (b) naive server, (c) this API, (d) it on TensorFlow.

One run starts the development issuer, both naive servers and the API on 127.0.0.1, gets a real
token, then for each round runs (a) once per backend and precision the API systems serve
(``bench/ceiling.py``) and every connection count against each server in turn (interleaved, so
a noisy neighbour hits all of them alike), and reports the median of the rounds. Each round
then runs the shared-cores cases (``bench/contention.py``): the ceilings and the servers beside
a CPU hog, and the ceilings and servers pinned to one core. Every loop is bounded by a
duration or a count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ceiling, contention, report
from bench.envsize import serving_env_sizes
from bench.issuer import AUDIENCE, Issuer, start_issuer
from bench.load import (
    HealthProbe,
    LoadGenerator,
    LoadResult,
    batch_counters,
    find_load_tool,
    multipart_body,
)
from bench.procs import Server, start
from bench.token_cost import token_validation_us
from bench.workload import bench_image, describe_image, resolve_model
from cats_dogs_other.api.middleware.access_log import logging_config
from cats_dogs_other.core.cli_help import EnvironmentHelpFormatter
from cats_dogs_other.loopback import LOOPBACK, free_port
from tools.procfs import cpu_model, load_average, machine_busy_seconds

RESULTS_DIR = Path(__file__).with_name("results")

SYSTEMS = {
    "a": "(a) ceiling",
    "b": "(b) naive, course",
    "b2": "(b') naive + wheel (Keras)",
    "c": "(c) this API",
    "cov": "(c) this API, OpenVINO",
    "int8": "(c) this API, int8",  # runs from before int8 became the default
    "f32": "(c) this API, f32 pinned",
    "d": "(d) this API, TensorFlow backend",
    "c2": "(c') this API, 2 workers",
    "s": "(s) this API + STATE_URL (Redis) + RATE_LIMIT, beside (c), Bearer and DPoP",
}
API_SYSTEMS = ("c", "d", "c2", "cov", "f32")
# (d): the same server and settings on the Keras/TensorFlow backend (the reference path).
D_ENV = "INFERENCE_BACKEND=keras"
# (c'): several uvicorn workers, each with its runtime and decoding cut to its share of the cores.
C2_ENV = "WORKERS=2,INFERENCE_THREADS=1,DECODE_THREADS=1"
# (c) on the wheel's optional OpenVINO backend (the same model.onnx).
COV_ENV = {"INFERENCE_BACKEND": "openvino"}
# (c) serves the default precision (int8 where the folder has model.int8.onnx); this pins f32.
F32_ENV = {"INFERENCE_PRECISION": "f32"}


@dataclass
class Point:
    """One measurement of one server at one connection count in one round."""

    system: str
    connections: int
    round: int
    load: dict[str, Any]
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    shed: int
    timeouts: int
    avg_batch: float | None
    rss_mib: float
    cpu_ms_per_request: float | None = None
    server_cores: float | None = None  # CPU the server used, in cores
    machine_cores: float | None = None  # CPU the whole machine used (server, wrk, the rest)
    health_p99_ms: float | None = None
    health_failures: int = 0
    requests_per_cpu_s: float | None = None  # 2xx answers per CPU-second of the server


@dataclass
class Run:
    started: str
    options: dict[str, Any]
    environment: dict[str, Any]
    # one per ceiling process: case, round, systems (the API rows it bounds), backend,
    # precision, images_per_s and images_per_cpu_s per batch size (bench/ceiling.py)
    ceilings: list[dict[str, Any]] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    token_validation_us: float | None = None
    notes: list[str] = field(default_factory=list)
    startup_s: dict[str, float] = field(default_factory=dict)  # process start -> /ready 200
    rss_idle_mib: dict[str, float] = field(default_factory=dict)  # once ready, before any load
    rss_peak_mib: dict[str, float] = field(default_factory=dict)  # VmHWM at the end of the run
    env_mib: dict[str, float] = field(default_factory=dict)  # installed serving environment
    cases: list[dict[str, Any]] = field(default_factory=list)  # bench.contention's points
    shared_state: dict[str, Any] | None = None  # bench.shared_state.compare, with (s)


ENVIRONMENT = """\
environment variables:
  TF_INTRA_OP_THREADS, TF_INTER_OP_THREADS   TensorFlow threads of the (a) ceiling run
  API_WORKER_NICE          nice value of (c)'s decode threads (default 0)
  anything else            passed to the servers under test; (c) is configured with
                           --server-env KEY=VALUE (see python boot.py --help), and its
                           OAUTH2_* settings point at the benchmark's own issuer
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per point (10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (3)")
    parser.add_argument("--connections", default="1,8,32,64", help="comma-separated (1,8,32,64)")
    parser.add_argument(
        "--systems",
        default="a,b,b2,c,d,cov,int8,s",
        help="subset of a,b,b2,c,cov,int8,d,c2,s (a,b,b2,c,d,cov,int8,s)",
    )
    parser.add_argument(
        "--cases", default=",".join(contention.CASES),
        help="shared-cores cases run each round after the quiet points, or none "
        f"({','.join(contention.CASES)}; see bench/contention.py)",
    )  # fmt: skip
    parser.add_argument(
        "--case-connections", default=contention.CASE_CONNECTIONS,
        help=f"connection counts of those cases ({contention.CASE_CONNECTIONS})",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="3 s points, 1 round: a smoke run")
    parser.add_argument("--model", type=Path, help="model file (default: the bundled model)")
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout, s (10)")
    parser.add_argument(
        "--ceiling-batch-sizes", default="1,8,16,32", help="(a)'s, quiet (1,8,16,32)"
    )
    parser.add_argument(
        "--case-ceiling-batch", default=contention.CASE_CEILING_BATCH,
        help="(a)'s batch size in the shared-cores cases: the one the API forms "
        f"({contention.CASE_CEILING_BATCH})",
    )  # fmt: skip
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for (c), e.g. BATCH_MAX_SIZE=8 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--c2-env", default=C2_ENV, help=f"environment of (c') on top of --server-env ({C2_ENV})"
    )
    parser.add_argument(
        "--d-env", default=D_ENV, help=f"environment of (d) on top of --server-env ({D_ENV})"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--label", default="", help="a note printed in RESULTS.md")
    parser.add_argument(
        "--image", type=Path,
        help="image to upload, sent as it is (default: a course photo at 640x480, see workload.py)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = min(args.duration, 3.0), 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    systems, notes = _systems(args.systems)
    connections = [int(c) for c in args.connections.split(",") if c]
    cases = contention.parse_cases(args.cases)
    raw_dir = args.out / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    api_envs = _api_envs(args)
    model_path, model_note = resolve_model(args.model, raw_dir)
    notes += _drop_f32_if_default(systems, model_path)
    image, origin, image_path, body_path, content_type = _upload(args, raw_dir)
    tool = find_load_tool()
    run = Run(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        options=_options(args, systems, connections, cases, api_envs, tool),
        environment=_environment(model_note, model_path, f"{describe_image(image)}: {origin}"),
        notes=notes,
    )
    issuer = start_issuer(raw_dir)
    print(f"[bench] development issuer at {issuer.url}", flush=True)
    servers: dict[str, Server] = {}
    load = LoadGenerator(tool, body_path, content_type, issuer.token)
    ceilings = _Ceilings(run, api_envs, model_path, image_path, args) if "a" in systems else None
    shared = contention.SharedCores(
        cases, systems, [int(c) for c in args.case_connections.split(",") if c],
        lambda name, server, n, round_no: _measure(name, server, load, n, round_no, args, False),
        raw_dir, ceilings.case if ceilings else None,
    )  # fmt: skip
    try:
        servers = _start_servers(run, systems, issuer, model_path, api_envs, raw_dir)
        for name, server in servers.items():
            print(f"[bench] warming {name}", flush=True)
            load.run(server.port, 8, min(3.0, args.duration), args.timeout)
        shared.start(
            lambda names, prefix: _start_servers(
                run, names, issuer, model_path, api_envs, raw_dir, prefix=prefix
            ),
            lambda server: load.run(server.port, 8, min(3.0, args.duration), args.timeout),
        )
        for round_no in range(1, args.rounds + 1):
            if ceilings:
                ceilings.quiet(round_no, systems)
            _one_round(run, round_no, args, connections, servers, load)
            shared.run_round(round_no, servers)
        _stop_all(run, servers, shared)
        if "s" in systems:  # on its own, once the other servers have stopped
            from bench import shared_state  # it imports this module

            run.shared_state = shared_state.compare(
                issuer, model_path, image, raw_dir / "shared_state", rounds=args.rounds,
                seconds=args.duration, server_env=api_envs["c"],
            )  # fmt: skip
    finally:
        shared.stop()
        for server in servers.values():
            server.stop()
        issuer.stop()
    run.cases = shared.points
    _finish(run, args.out)
    return 0


def _systems(text: str) -> tuple[list[str], list[str]]:
    """The systems asked for, less (c) on OpenVINO without its extra; the notes saying so."""
    systems = [s for s in text.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {sorted(SYSTEMS)}")
    return systems, _drop_openvino_if_absent(systems)


def _stop_all(run: Run, servers: dict[str, Server], shared: contention.SharedCores) -> None:
    """Peak RSS of each quiet server, then every server stopped (and forgotten)."""
    run.rss_peak_mib = {name: server.peak_rss_mib() for name, server in servers.items()}
    shared.stop()
    for server in servers.values():
        server.stop()
    servers.clear()


def _upload(args: argparse.Namespace, raw_dir: Path) -> tuple[bytes, str, Path, Path, str]:
    """The image (``--image`` or the course photo) and its origin, the image written for (a),
    and the upload's body."""
    image, origin = (args.image.read_bytes(), str(args.image)) if args.image else bench_image()
    image_path = raw_dir / "image.jpg"
    image_path.write_bytes(image)
    body, content_type = multipart_body(image)
    body_path = raw_dir / "body.bin"
    body_path.write_bytes(body)
    return image, origin, image_path, body_path, content_type


def _environment(model_note: str, model_path: Path, image: str) -> dict[str, Any]:
    return {
        "cpu": cpu_model(), "cores": _cores(), "python": sys.version.split()[0],
        "model": model_note, "image": image,
        "int8_gate": _int8_gate(model_path), "load_before": load_average(),
    }  # fmt: skip


def _api_envs(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Each API system's environment on top of the servers' common one; (c)'s is --server-env."""
    server_env = dict(item.split("=", 1) for item in args.server_env)
    c2_env = {**server_env, **dict(a.split("=", 1) for a in args.c2_env.split(",") if a)}
    d_env = {**server_env, **dict(a.split("=", 1) for a in args.d_env.split(",") if a)}
    return {
        "c": server_env, "d": d_env, "c2": c2_env, "cov": {**server_env, **COV_ENV},
        "f32": {**server_env, **F32_ENV},
    }  # fmt: skip


def _options(
    args: argparse.Namespace,
    systems: list[str],
    connections: list[int],
    cases: list[str],
    api_envs: dict[str, dict[str, str]],
    tool: str,
) -> dict[str, Any]:
    return {
        "duration_s": args.duration, "rounds": args.rounds, "connections": connections,
        "systems": systems, "client_timeout_s": args.timeout, "server_env": api_envs["c"],
        "cases": cases, "case_connections": args.case_connections,
        "ceiling_batch_sizes": args.ceiling_batch_sizes,
        "case_ceiling_batch": args.case_ceiling_batch,
        "c2_env": api_envs["c2"], "d_env": api_envs["d"],
        "label": args.label, "load_tool": tool,
    }  # fmt: skip


def _finish(run: Run, out: Path) -> None:
    """The figures measured once the servers have stopped, then the reports."""
    run.environment["load_after"] = load_average()
    run.env_mib = serving_env_sizes()
    try:
        run.token_validation_us = token_validation_us()
    except Exception as error:  # the run's figures are written all the same
        run.notes.append(f"token validation was not timed: {error!r}")
    _write(run, out)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _drop_openvino_if_absent(systems: list[str]) -> list[str]:
    """The OpenVINO row needs the wheel's ``openvino`` extra; without it the row is skipped."""
    from kto.inference.backends.openvino_backend import openvino_available

    if "cov" not in systems or openvino_available():
        return []
    systems.remove("cov")
    return ["(c) on OpenVINO was not run: install the wheel's openvino extra (requirements.txt)"]


def _drop_f32_if_default(systems: list[str], model_path: Path) -> list[str]:
    """Without the folder's ``model.int8.onnx`` (c) already serves f32."""
    from kto.inference.model import INT8_FILENAME

    notes = []
    if "int8" in systems:  # (c) serves int8 now; the comparison it stood for is (c) vs f32
        systems[systems.index("int8")] = "f32"
        notes.append("--systems int8 ran as f32: (c) serves int8 by default")
    if "f32" not in systems or (model_path / INT8_FILENAME).is_file():
        return notes
    systems.remove("f32")
    return [*notes, f"(c) f32 pinned was not run: {model_path} has no {INT8_FILENAME}"]


def _int8_gate(model_path: Path) -> bool | None:
    """Whether the folder's int8 file passed the champion/challenger gate (its metrics.json)."""
    try:
        record = json.loads((model_path / "metrics.json").read_text(encoding="utf-8"))["int8"]
        return bool(record["champion_gate"]["passed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _start_servers(
    run: Run,
    systems: list[str],
    issuer: Issuer,
    model_path: Path,
    api_envs: dict[str, dict[str, str]],
    log_dir: Path,
    prefix: Sequence[str] = (),
) -> dict[str, Server]:
    """Start ``systems`` one at a time; with a ``prefix`` (``taskset -c 0``) they are the
    one-core case's servers, whose start-up figures are not the run's."""
    tag = "_pinned" if prefix else ""
    common = {
        "OAUTH2_ISSUER": issuer.url,
        "OAUTH2_AUDIENCE": AUDIENCE,
        "MODEL_PATH": str(model_path),
    }
    servers: dict[str, Server] = {}
    try:
        for name in systems:
            if name in ("a", "s"):  # in-process, and bench.shared_state's own servers
                continue
            port = free_port()
            started = time.monotonic()
            if name in API_SYSTEMS:
                env = {**common, **api_envs[name]}
                servers[name] = start_api(
                    env, port, log_dir, ("api" if name == "c" else f"api_{name}") + tag, prefix
                )
                ready = "/ready"
            else:
                mode = "course" if name == "b" else "wheel"
                args = ["-m", "bench.naive_server", "--port", str(port), "--mode", mode]
                servers[name] = start(f"naive_{mode}{tag}", args, common, port, log_dir, prefix)
                ready = "/health"
            # one at a time: two TensorFlow start-ups at once on 2 cores slow both down
            servers[name].wait_until(ready)
            took, rss = time.monotonic() - started, servers[name].rss_mib()
            if not prefix:
                run.startup_s[name], run.rss_idle_mib[name] = took, rss
            print(
                f"[bench] {name}{tag} ready on port {port} after {took:.1f} s, rss {rss:.0f} MiB",
                flush=True,
            )
    except Exception:
        for server in servers.values():
            server.stop()
        raise
    return servers


class _Ceilings:
    """(a) per backend and precision the run's API systems serve, each its own process."""

    def __init__(
        self,
        run: Run,
        api_envs: dict[str, dict[str, str]],
        model: Path,
        image: Path,
        args: argparse.Namespace,
    ) -> None:
        self.run, self.api_envs, self.model, self.image = run, api_envs, model, image
        self.seconds = max(2.0, args.duration / 2)  # per batch size
        self.sizes, self.case_size = args.ceiling_batch_sizes, args.case_ceiling_batch

    def quiet(self, round_no: int, systems: list[str]) -> None:
        self._measure("quiet", round_no, systems, self.sizes, ())

    def case(self, case: str, round_no: int, systems: list[str], prefix: Sequence[str]) -> None:
        """At the batch size the API forms only: the cases' share of the 45-minute budget."""
        self._measure(case, round_no, systems, self.case_size, prefix)

    def _measure(
        self, case: str, round_no: int, systems: list[str], sizes: str, prefix: Sequence[str]
    ) -> None:
        served = [s for s in systems if s in API_SYSTEMS]
        for spec, bounds in ceiling.specs_for(served, self.api_envs).items():
            started = time.monotonic()
            result = ceiling.run(self.model, self.image, self.seconds, sizes, spec, prefix)
            result["wall_s"] = round(time.monotonic() - started, 1)  # the bench's budget
            self.run.ceilings.append({"case": case, "round": round_no, "systems": bounds, **result})
            print(
                f"[bench] round {round_no} {case} {ceiling.describe(result)} "
                f"({result['wall_s']:g} s)",
                flush=True,
            )


def _one_round(
    run: Run,
    round_no: int,
    args: argparse.Namespace,
    connections: list[int],
    servers: dict[str, Server],
    load: LoadGenerator,
) -> None:
    saturated = max(connections)
    for n in connections:
        for name, server in servers.items():
            point = _measure(name, server, load, n, round_no, args, probe=n == saturated)
            run.points.append(point)
            health = f" health p99 {point.health_p99_ms:.1f} ms" if point.health_p99_ms else ""
            batch = f" batch {point.avg_batch:.1f}" if point.avg_batch else ""
            cpu = point.cpu_ms_per_request or 0.0
            print(
                f"[bench] round {round_no} ({name}) c={n}: {point.rps:.1f} req/s "
                f"p50 {point.p50_ms:.0f} ms p99 {point.p99_ms:.0f} ms errors {point.errors} "
                f"(503: {point.shed}, timeouts {point.timeouts}){batch}{health} "
                f"cpu {cpu:.1f} ms/req, server {point.server_cores:.2f} of "
                f"{point.machine_cores:.2f} busy cores, rss {point.rss_mib:.0f} MiB",
                flush=True,
            )
            waited = server.wait_idle()  # its backlog must not eat into the next point
            if waited > 2.0:
                print(f"[bench] {name} was busy {waited:.1f} s after its point", flush=True)


def _measure(
    name: str,
    server: Server,
    load: LoadGenerator,
    connections: int,
    round_no: int,
    args: argparse.Namespace,
    probe: bool,
) -> Point:
    scraped = name in API_SYSTEMS
    before = batch_counters(server.port) if scraped else None
    cpu_before = server.cpu_seconds()
    machine_before = machine_busy_seconds()
    health: HealthProbe | None = None
    if probe:
        with HealthProbe(server.port) as health:
            result = load.run(server.port, connections, args.duration, args.timeout)
    else:
        result = load.run(server.port, connections, args.duration, args.timeout)
    cpu = server.cpu_seconds() - cpu_before
    machine_busy, now = machine_busy_seconds()
    wall = now - machine_before[1]
    rss = server.rss_mib()
    after = batch_counters(server.port) if scraped else None
    avg_batch = None
    if before and after and after[1] > before[1]:
        avg_batch = (after[0] - before[0]) / (after[1] - before[1])
    point = _point(name, result, round_no, avg_batch, rss, health)
    if result.requests:
        point.cpu_ms_per_request = 1000 * cpu / result.requests
    point.server_cores = cpu / wall
    if cpu > 0:
        point.requests_per_cpu_s = result.ok / cpu
    point.machine_cores = (machine_busy - machine_before[0]) / wall
    return point


def _point(
    name: str,
    result: LoadResult,
    round_no: int,
    avg_batch: float | None,
    rss: float,
    health: HealthProbe | None,
) -> Point:
    return Point(
        system=name,
        connections=result.connections,
        round=round_no,
        load=asdict(result),
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        shed=result.shed,
        timeouts=result.timeouts,
        avg_batch=avg_batch,
        rss_mib=rss,
        health_p99_ms=health.p99_ms() if health and health.latencies_ms else None,
        health_failures=health.failures if health else 0,
    )


def start_api(
    env: dict[str, str], port: int, log_dir: Path, name: str, prefix: Sequence[str] = ()
) -> Server:
    """``python boot.py``; the pseudo-variables UVICORN_HTTP / UVICORN_LOOP / API_WORKER_NICE (for
    tuning) run the app factory (or bench.api_variant's) through uvicorn's CLI instead."""
    env = {**env, "HOST": LOOPBACK, "PORT": str(port)}
    http, loop = env.pop("UVICORN_HTTP", None), env.pop("UVICORN_LOOP", None)
    variant = env.get("API_WORKER_NICE")
    if http is None and loop is None and variant is None:
        return start(name, ["boot.py"], env, port, log_dir, prefix)
    factory = "bench.api_variant:create_app" if variant else "cats_dogs_other.api.app:create_app"
    log_config = log_dir / "log_config.json"  # boot.py's logging, so both paths log alike
    log_config.write_text(json.dumps(logging_config(env.get("LOG_LEVEL", "INFO"))))
    args = [
        "-m", "uvicorn", factory, "--factory", "--host", LOOPBACK, "--port", str(port),
        "--no-access-log", "--no-server-header", "--log-config", str(log_config),
        "--http", http or "auto", "--loop", loop or "auto", "--workers", env.get("WORKERS", "1"),
    ]  # fmt: skip
    return start(name, args, env, port, log_dir, prefix)


def _write(run: Run, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = asdict(run)
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    summary = report.summarise(data)
    shared = contention.markdown(data, SYSTEMS)
    from bench import shared_state  # it imports this module

    state = "\n" + shared_state.markdown(run.shared_state) if run.shared_state else ""
    (out / "RESULTS.md").write_text(report.markdown(data, summary, SYSTEMS) + shared + state)
    report.plot(summary, out / "bench.png", SYSTEMS)
    print(f"[bench] wrote {out / 'RESULTS.md'} and {out / 'bench.png'}", flush=True)
    print(report.table(summary, SYSTEMS), flush=True)
    print(report.targets_text(summary), flush=True)
    if shared:
        print(shared, flush=True)
    if state:
        print(state, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
