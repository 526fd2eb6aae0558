"""``python -m bench.tune``: sweep (c)'s settings to choose its defaults by measurement.

Each configuration is a name and environment variables for the API (``BATCH_MAX_SIZE``,
``BATCH_MAX_WAIT_MS``, ``INFERENCE_THREADS``, ``INFERENCE_BACKEND``, ``DECODE_THREADS``,
``WORKERS``, ``TF_INTRA_OP_THREADS``..., plus
``UVICORN_HTTP``/``UVICORN_LOOP``, see ``bench.harness.start_api``). Every configuration gets a
fresh server, a warm-up, then each connection count; the first configuration (the baseline)
is measured again at the end to show how much the machine drifted meanwhile. Writes
``bench/results/TUNING.md`` and ``tuning.json``.

``python -m bench.tune --config b8:BATCH_MAX_SIZE=8 --config b16:BATCH_MAX_SIZE=16``
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import RESULTS_DIR, Point, _measure, start_api
from bench.issuer import AUDIENCE, start_issuer
from bench.load import LoadGenerator, find_load_tool, multipart_body
from bench.workload import bench_image, resolve_model
from cats_dogs_other.loopback import free_port
from tools.procfs import cpu_model, load_average

DEFAULT_CONFIGS = [
    "default:",
    "batch4:BATCH_MAX_SIZE=4",
    "batch16:BATCH_MAX_SIZE=16",
    "wait10:BATCH_MAX_WAIT_MS=10",
    "wait20:BATCH_MAX_WAIT_MS=20",
    "threads1:INFERENCE_THREADS=1",
    "threads2:INFERENCE_THREADS=2",
    "decode1:DECODE_THREADS=1",
    "2workers:WORKERS=2,INFERENCE_THREADS=1,DECODE_THREADS=1",
    "tf-default:INFERENCE_BACKEND=keras",
]


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if a)
    return name, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__)
    parser.add_argument("--config", action="append", help="NAME:KEY=VALUE,KEY=VALUE (repeatable)")
    parser.add_argument("--base", default="", help="env applied to every config, KEY=V,KEY=V")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", default="8,64")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    configs = [parse_config(c) for c in (args.config or DEFAULT_CONFIGS)]
    configs.append((configs[0][0] + " (again)", configs[0][1]))
    base = parse_config("base:" + args.base)[1]
    connections = [int(c) for c in args.connections.split(",") if c]
    raw_dir = args.out / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    model_path, model_note = resolve_model(args.model, raw_dir)
    body, content_type = multipart_body(bench_image()[0])
    body_path = raw_dir / "body.bin"
    body_path.write_bytes(body)
    issuer = start_issuer(raw_dir)
    load = LoadGenerator(find_load_tool(), body_path, content_type, issuer.token)
    common = {
        "OAUTH2_ISSUER": issuer.url,
        "OAUTH2_AUDIENCE": AUDIENCE,
        "MODEL_PATH": str(model_path),
    }
    rows: list[dict[str, Any]] = []
    opts = argparse.Namespace(duration=args.duration, timeout=args.timeout)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    try:
        for name, env in configs:
            port = free_port()
            server = start_api({**common, **base, **env}, port, raw_dir, f"tune-{name.split()[0]}")
            try:
                server.wait_until("/ready")
                load.run(port, 8, 3.0, args.timeout)  # warm-up, not recorded
                for n in connections:
                    point: Point = _measure(
                        "c", server, load, n, 1, opts, probe=n == max(connections)
                    )
                    rows.append({"config": name, "env": {**base, **env}, **asdict(point)})
                    print(_line(name, point), flush=True)
            finally:
                server.stop()
    finally:
        issuer.stop()
    meta = {
        "started": started, "cpu": cpu_model(), "model": model_note, "duration_s": args.duration,
        "load_before": load_before, "load_after": load_average(),
    }  # fmt: skip
    (args.out / "tuning.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (args.out / "TUNING.md").write_text(_markdown(meta, rows))
    print(f"[tune] wrote {args.out / 'TUNING.md'}", flush=True)
    return 0


def _line(name: str, p: Point) -> str:
    health = f" health p99 {p.health_p99_ms:.1f} ms" if p.health_p99_ms else ""
    return (
        f"[tune] {name:>18} c={p.connections:<3} {p.rps:6.1f} req/s p50 {p.p50_ms:5.0f} ms "
        f"p99 {p.p99_ms:5.0f} ms errors {p.errors} (503 {p.shed}) batch {p.avg_batch or 0:.1f} "
        f"cpu {p.cpu_ms_per_request or 0:.1f} ms/req cores {p.server_cores or 0:.2f}/"
        f"{p.machine_cores or 0:.2f}{health}"
    )


def _markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Tuning sweep of (c)",
        "",
        f"`python -m bench.tune`, {meta['started']}, {meta['cpu']}; model: {meta['model']}; "
        f"{meta['duration_s']} s per point, one round; load average before {meta['load_before']}, "
        f"after {meta['load_after']}. The baseline runs first and again last (drift check).",
        "",
        "| config | env | conn. | req/s | p50 ms | p99 ms | p99/p50 | errors (503) | avg batch "
        "| server CPU ms/req | server / machine busy cores | /health p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        env = " ".join(f"{k}={v}" for k, v in r["env"].items()) or "defaults"
        ratio = r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else float("nan")
        health = f"{r['health_p99_ms']:.1f}" if r["health_p99_ms"] else "-"
        lines.append(
            f"| {r['config']} | {env} | {r['connections']} | {r['rps']:.1f} | {r['p50_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {ratio:.2f} | {r['errors']} ({r['shed']}) "
            f"| {r['avg_batch'] or 0:.1f} | {r['cpu_ms_per_request'] or 0:.1f} "
            f"| {r['server_cores'] or 0:.2f} / {r['machine_cores'] or 0:.2f} | {health} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
