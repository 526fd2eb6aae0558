"""Turn a run's raw points into medians, a markdown report, a table and a plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from bench import ceiling

Summary = dict[str, Any]


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else None


def summarise(run: dict[str, Any]) -> Summary:
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for point in run["points"]:
        rows.setdefault(point["system"], {}).setdefault(point["connections"], []).append(point)
    table: dict[str, dict[int, dict[str, Any]]] = {}
    for system, per_conn in rows.items():
        for n, points in per_conn.items():
            table.setdefault(system, {})[n] = {
                "rps": _median([p["rps"] for p in points]),
                "p50": _median([p["p50_ms"] for p in points]),
                "p99": _median([p["p99_ms"] for p in points]),
                "errors": sum(p["errors"] for p in points),
                "shed": sum(p["shed"] for p in points),
                "timeouts": sum(p["timeouts"] for p in points),
                "other_errors": sum(p["errors"] - p["shed"] - p["timeouts"] for p in points),
                "avg_batch": _median([p["avg_batch"] for p in points if p["avg_batch"]]),
                "rss": max(p["rss_mib"] for p in points),
                "cpu_ms": _median([p.get("cpu_ms_per_request") for p in points]),
                "server_cores": _median([p.get("server_cores") for p in points]),
                "machine_cores": _median([p.get("machine_cores") for p in points]),
                "health_p99": _median([p["health_p99_ms"] for p in points if p["health_p99_ms"]]),
                "rounds": len(points),
            }
    ceilings = ceiling.summarise(run)
    default = ceiling.own(ceilings, "c") or next(iter(ceilings.items()), None)
    summary: Summary = {
        # (a) per backend and precision, by label; "ceiling" is (c)'s (the plot's line)
        "ceilings": ceilings,
        "ceiling": {"label": default[0], **default[1]}
        if default
        else {"label": "(a) ceiling", "by_batch": {}, "best": None, "best_batch": None},
        "rows": {s: dict(sorted(t.items())) for s, t in table.items()},
        "token_us": run.get("token_validation_us"),
        "startup_s": run.get("startup_s", {}),
        "rss_idle": run.get("rss_idle_mib", {}),
        "rss_peak": run.get("rss_peak_mib", {}),
        "env_mib": run.get("env_mib", {}),
        "int8_gate": run.get("environment", {}).get("int8_gate"),
    }
    summary["targets"] = targets(summary)
    return summary


def _get(summary: Summary, system: str, n: int, key: str) -> Any:
    return summary["rows"].get(system, {}).get(n, {}).get(key)


def targets(summary: Summary) -> list[dict[str, Any]]:
    """The targets, each as (what, measured, pass/fail or None when not measured)."""
    found: list[dict[str, Any]] = []
    for system, name in (("c", "(c)"), ("c2", "(c')")):
        if system in summary["rows"]:
            found += _targets_of(summary, system, name)
    found += _ceiling_targets(summary)
    found += _runtime_targets(summary)
    token = summary.get("token_us")
    if token is not None:
        found.append(
            {
                "target": "median token validation, warm keys < 200 us",
                "measured": f"{token:.0f} us",
                "ok": token < 200,
            }
        )
    return found


def _ratio_target(what: str, c: float | None, d: float | None, limit: float, higher: bool) -> Any:
    if c is None or not d:
        return None
    ratio = c / d
    return {
        "target": what,
        "measured": f"{ratio:.2f} x",
        "ok": ratio >= limit if higher else ratio <= limit,
    }


def _precision_target(summary: Summary) -> Any:
    """(c) serves the default (int8 where the folder has it) against (c) with f32 pinned; the
    int8 default also needs the model's champion/challenger gate (its metrics.json)."""
    found = _ratio_target(
        "int8 default >= 1.4 x the f32 default at 8 connections (same run) and the gate passed",
        _get(summary, "c", 8, "rps"), _get(summary, "f32", 8, "rps"), 1.4, True,
    )  # fmt: skip
    if found is not None:
        passed = summary.get("int8_gate")
        found["measured"] += ", gate " + (
            "unknown" if passed is None else "passed" if passed else "failed"
        )
        found["ok"] = found["ok"] and passed is True
    return found


def _runtime_targets(summary: Summary) -> list[dict[str, Any]]:
    """(c), the ONNX Runtime backend, against (d), the same API on TensorFlow."""
    rss, env, up = summary["rss_peak"], summary["env_mib"], summary["startup_s"]
    p50 = _get(summary, "c", 1, "p50")
    candidates = [
        _ratio_target(
            "(c) >= 1.8 x (d) req/s at 8 connections",
            _get(summary, "c", 8, "rps"), _get(summary, "d", 8, "rps"), 1.8, True,
        ),
        _ratio_target("(c) peak RSS <= 0.5 x (d)", rss.get("c"), rss.get("d"), 0.5, False),
        _ratio_target(
            "serving environment (c) <= 0.4 x (d) (the API's install before)",
            env.get("c"), env.get("d"), 0.4, False,
        ),
        _ratio_target("start to /ready (c) <= 0.5 x (d)", up.get("c"), up.get("d"), 0.5, False),
        _precision_target(summary),
    ]  # fmt: skip
    found = [t for t in candidates if t is not None]
    cpu_c, cpu_d = _get(summary, "c", 8, "cpu_ms"), _get(summary, "d", 8, "cpu_ms")
    if cpu_c and cpu_d:  # steadier than req/s on a shared machine: CPU time is not wall time
        found.append(
            {"target": "(for information) (d) / (c) server CPU ms per request at 8 connections",
             "measured": f"{cpu_d / cpu_c:.2f} x", "ok": None}
        )  # fmt: skip
    if p50 is not None:
        found.append(
            {"target": "(c) p50 <= 12 ms at 1 connection", "measured": f"{p50:.1f} ms",
             "ok": p50 <= 12}
        )  # fmt: skip
    return found


def _targets_of(summary: Summary, system: str, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    conns = sorted(summary["rows"].get(system, {}))

    def add(what: str, measured: str, ok: bool | None) -> None:
        found.append({"target": f"{name} {what}", "measured": measured, "ok": ok})

    # (b'): the naive server of issue #27 (the wheel's compiled forward pass once per request)
    for base, label, bar in (("b", "(b)", 6.0), ("b2", "(b')", 2.5)):
        c8, b8 = _get(summary, system, 8, "rps"), _get(summary, base, 8, "rps")
        if c8 is not None and b8:
            add(f">= {bar:g} x {label} at 8 connections", f"{c8 / b8:.1f} x", c8 >= bar * b8)
    p50, p99 = _get(summary, system, 8, "p50"), _get(summary, system, 8, "p99")
    if p50 and p99 is not None:
        add("p99 <= 1.5 x p50 at 8 connections", f"{p99 / p50:.2f} x", p99 <= 1.5 * p50)
    if 32 in conns:
        errors = _get(summary, system, 32, "errors")
        add("0 errors at 32 connections", f"{errors} errors", errors == 0)
    if 64 in conns:
        timeouts = _get(summary, system, 64, "timeouts")
        other = _get(summary, system, 64, "other_errors")
        shed = _get(summary, system, 64, "shed")
        add(
            "at 64: excess shed with 503, no client timeout",
            f"{shed} x 503, {timeouts} timeouts, {other} other errors",
            timeouts == 0 and other == 0,
        )
    if conns:
        health = _get(summary, system, max(conns), "health_p99")
        if health is not None:
            add(
                f"/health p99 < 50 ms saturated ({max(conns)} conn.)",
                f"{health:.1f} ms",
                health < 50,
            )
    return found


CEILING_BOUND = ("c", "c2", "f32", "cov", "d")  # the API systems, each against its own (a)


def _ceiling_targets(summary: Summary) -> list[dict[str, Any]]:
    """Each API system at 8+ connections against the best batch of its own backend's and
    precision's ceiling (int8 against int8, OpenVINO against OpenVINO)."""
    found: list[dict[str, Any]] = []
    for system in CEILING_BOUND:
        mine = ceiling.own(summary.get("ceilings", {}), system)
        if mine is None or not mine[1]["best"]:
            continue
        name, best = mine[0], mine[1]["best"]
        for n, row in summary["rows"].get(system, {}).items():
            if n >= 8 and row["rps"] is not None:
                found.append(
                    {"target": f"({system}) >= 0.85 x {name} at {n} connections",
                     "measured": f"{row['rps'] / best:.2f} x", "ok": row["rps"] >= 0.85 * best}
                )  # fmt: skip
    return found


def _fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def table(summary: Summary, names: dict[str, str]) -> str:
    lines = [
        "| system | conn. | req/s (2xx) | p50 ms | p99 ms | errors | of which 503 | timeouts "
        "| avg batch | server CPU ms/req | cores: server / machine | RSS MiB | /health p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, figures in summary["ceilings"].items():
        for size, value in figures["by_batch"].items():
            lines.append(
                f"| {name} | batch {size} | {value:.1f} img/s | | | | | | {size} | | | | |"
            )
    for system in ("b", "b2", "c", "cov", "f32", "int8", "d", "c2"):
        for n, row in summary["rows"].get(system, {}).items():
            lines.append(
                f"| {names[system]} | {n} | {_fmt(row['rps'])} | {_fmt(row['p50'], '.0f')} "
                f"| {_fmt(row['p99'], '.0f')} | {row['errors']} | {row['shed']} "
                f"| {row['timeouts']} | {_fmt(row['avg_batch'])} | {_fmt(row['cpu_ms'])} "
                f"| {_fmt(row['server_cores'], '.2f')} / {_fmt(row['machine_cores'], '.2f')} "
                f"| {_fmt(row['rss'], '.0f')} "
                f"| {_fmt(row['health_p99'])} |"
            )
    return "\n".join(lines)


def process_table(summary: Summary, names: dict[str, str]) -> str:
    """Per server: start to ready, RSS idle and peak, the installed serving environment."""
    lines = [
        "| system | start to ready s | RSS idle MiB | RSS peak MiB | serving env MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for system in summary["startup_s"]:
        env = summary["env_mib"].get(system)
        lines.append(
            f"| {names[system]} | {_fmt(summary['startup_s'].get(system))} "
            f"| {_fmt(summary['rss_idle'].get(system), '.0f')} "
            f"| {_fmt(summary['rss_peak'].get(system), '.0f')} | {_fmt(env, '.0f')} |"
        )
    return "\n".join(lines)


def targets_text(summary: Summary) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for t in summary["targets"]:
        met = "n/a" if t["ok"] is None else ("yes" if t["ok"] else "**no**")
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(lines)


def markdown(run: dict[str, Any], summary: Summary, names: dict[str, str]) -> str:
    env, opts = run["environment"], run["options"]
    server_env = " ".join(f"{k}={v}" for k, v in opts["server_env"].items()) or "(defaults)"
    parts = [
        "# Benchmark: ceiling vs naive server vs this API (ONNX Runtime and TensorFlow)",
        "",
        f"Run {run['started']} with `python -m bench` ({opts['load_tool']}, "
        f"{opts['duration_s']:g} s per point, median of {opts['rounds']} interleaved round(s), "
        f"client timeout {opts['client_timeout_s']:g} s). {opts['label']}",
        "",
        f"- machine: {env['cpu']}, {env['cores']} cores; load average before "
        f"{env['load_before']}, after {env.get('load_after', '?')}",
        f"- model: {env['model']}; image: {env['image']} (decoded and resized in every request)",
        f"- (c) settings: {server_env}; (d) adds "
        + (" ".join(f"{k}={v}" for k, v in opts.get("d_env", {}).items()) or "(not run)"),
        "- (c') settings: "
        + (" ".join(f"{k}={v}" for k, v in opts.get("c2_env", {}).items()) or "(not run)"),
        "- req/s counts 2xx answers only; errors = non-2xx + client timeouts + socket errors "
        "(summed over the rounds); latency from wrk (all answers); avg batch from (c)'s "
        "/metrics; RSS = VmRSS of the server and its children; /health probed every 25 ms on "
        "its own connection during the highest connection count; cores = CPU seconds per "
        "second used by the server, and by the whole machine (server + wrk + anything else: "
        "a machine figure well above the server's means the run shared the CPU).",
        "",
        "## Results",
        "",
        "(a) `Inference.execute_batch` in-process on pre-read bytes (decode + resize + one "
        "forward pass), images/s, one per backend and precision the API rows serve, named "
        "for what it ran (e.g. (a) ceiling, ORT int8 bounds (c)); each API row's target "
        "compares it with its own; (b) "
        "`bench/naive_server.py --mode course`: `async def` handler, token check, "
        "`model.predict` per request on the event loop; (b') the same "
        "handler calling `Inference.execute` (compiled forward pass) per request; (c) "
        "`python boot.py`: micro-batching, decode pool, bounded admission, the exported "
        "model.onnx on ONNX Runtime; (d) the same with `INFERENCE_BACKEND=keras` (TensorFlow). "
        "Serving env = installed size of the API requirements' dependency closure ((d): plus "
        "tensorflow-cpu and keras), from `bench/envsize.py`.",
        "",
        table(summary, names),
        "",
        process_table(summary, names),
        "",
        "## Targets",
        "",
        targets_text(summary),
        "",
    ]
    if run.get("notes"):
        parts += ["## Notes", "", *[f"- {n}" for n in run["notes"]], ""]
    parts += ["![throughput and p99 against connections](bench.png)", ""]
    return "\n".join(parts)


def plot(summary: Summary, path: Path, names: dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = (
        ("b", "s--"), ("b2", "^--"), ("c", "o-"), ("cov", "o:"), ("int8", "x-"), ("d", "v-"),
        ("c2", "D-"), ("f32", "x:"),
    )  # fmt: skip
    for system, style in styles:
        rows = summary["rows"].get(system)
        if not rows:
            continue
        conns = list(rows)
        left.plot(conns, [rows[n]["rps"] for n in conns], style, label=names[system])
        right.plot(conns, [rows[n]["p99"] for n in conns], style, label=names[system])
    best = summary["ceiling"]["best"]
    if best:
        left.axhline(
            best,
            color="grey",
            linestyle=":",
            label=f"{summary['ceiling']['label']}, batch {summary['ceiling']['best_batch']}",
        )
        left.axhline(
            0.85 * best, color="grey", linestyle="-.", linewidth=0.8, label="0.85 x ceiling"
        )
    for axis, title, unit in (
        (left, "throughput", "requests/s (2xx)"),
        (right, "p99 latency", "ms"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("connections")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Re-render RESULTS.md and bench.png from a results.json (no new measurement)."""
    import argparse
    import json

    from bench.contention import markdown as shared_cores
    from bench.harness import SYSTEMS

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", type=Path, nargs="?", default=Path("bench/results/results.json"))
    out = parser.parse_args().results.parent
    run = json.loads((out / "results.json").read_text())
    summary = summarise(run)
    (out / "RESULTS.md").write_text(markdown(run, summary, SYSTEMS) + shared_cores(run, SYSTEMS))
    plot(summary, out / "bench.png", SYSTEMS)
    print(table(summary, SYSTEMS))
    print(targets_text(summary))


if __name__ == "__main__":
    main()
