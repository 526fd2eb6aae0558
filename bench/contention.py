"""The shared-cores cases of ``python -m bench``: a CPU hog beside the servers, and one core.

- **contended**: Debian's ``stress-ng --cpu 1`` runs beside the servers while each is measured:
  the bench's own child, so in the same cgroup, and unpinned, like a busy neighbour process.
  Servers and hog share the bench's session, so autogroup scheduling (docs/performance.md)
  does not give each of them a group and one core of its own.
- **one-core**: the servers again, started under ``taskset -c 0``, standing in for a 1-CPU pod.
  The affinity holds from the first instruction, so the thread plan (``kto.inference.cpus``)
  sees one CPU, as it would in such a pod.

Each case runs in every round, after the quiet points, at 8 and 64 connections (the bench's
time budget), for both naive servers, this API, this API on OpenVINO (and (c') when run). The
targets compare (c) with (b'): the course pattern calling the wheel's compiled forward pass once
per request (the issue's "naive server"); (b) is shown for information. Each point
records the server's requests per CPU-second: its 2xx answers over the user + system time it
used (``/proc/PID/stat`` of the server and its children). That figure does not depend on how
much CPU the neighbour left, so it shows whether the server wastes CPU when it has to share.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import ceiling
from bench.procs import Server
from cats_dogs_other.loopback import Child
from tools.procfs import tree

CASES = ("contended", "one-core")
CASE_SYSTEMS = ("b", "b2", "c", "cov", "c2")
# "the naive server" of the targets: the course pattern on the wheel's compiled forward pass
NAIVE = "b2"
CASE_CONNECTIONS = "8,64"
CASE_CEILING_BATCH = "8"  # (a)'s batch size in the cases: about the batch the API forms
HOG = ("stress-ng", "--cpu", "1", "--quiet")
ONE_CORE = ("taskset", "-c", "0")
INSTALL_HINT = "bash scripts/install-bench-tools.sh (or make bench-tools)"

Measure = Callable[[str, Server, int, int], Any]  # (system, server, connections, round) -> Point
StartServers = Callable[[list[str], Sequence[str]], dict[str, Server]]  # (systems, prefix)
# (case, round, systems, prefix): the ceilings of those systems' backends, recorded by the caller
Ceilings = Callable[[str, int, list[str], Sequence[str]], None]


def parse_cases(text: str) -> list[str]:
    cases = [c for c in text.split(",") if c and c != "none"]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    if "contended" in cases and not shutil.which(HOG[0]):
        raise SystemExit(f"the contended case needs stress-ng: {INSTALL_HINT}")
    if "one-core" in cases and not shutil.which(ONE_CORE[0]):
        raise SystemExit("the one-core case needs taskset (util-linux)")
    return cases


@contextmanager
def cpu_hog(log_dir: Path, timeout_s: float = 10.0) -> Iterator[Child]:
    """``stress-ng --cpu 1`` until the block ends; yields once its worker process runs."""
    argv = [shutil.which(HOG[0]) or HOG[0], *HOG[1:]]
    hog = Child("stress-ng", argv, env=dict(os.environ), log_path=log_dir / "hog.log")
    hog.start()
    try:
        deadline = time.monotonic() + timeout_s
        while len(tree(hog.pid)) < 2:  # stress-ng forks one worker per --cpu
            hog.check_alive()
            if time.monotonic() > deadline:
                raise hog.error(f"no stress-ng worker after {timeout_s:g} s")
            time.sleep(0.05)
        yield hog
    finally:
        hog.stop(grace_s=5.0)


class SharedCores:
    """The cases' servers (one-core ones started pinned) and their points, round by round."""

    def __init__(
        self,
        cases: list[str],
        systems: list[str],
        connections: list[int],
        measure: Measure,
        log_dir: Path,
        ceilings: Ceilings | None = None,
    ) -> None:
        self.cases = cases
        self.ceilings = ceilings
        self.systems = [s for s in systems if s in CASE_SYSTEMS]
        self.connections = connections
        self.measure = measure
        self.log_dir = log_dir
        self.pinned: dict[str, Server] = {}
        self.points: list[dict[str, Any]] = []

    def start(self, start_servers: StartServers, warm: Callable[[Server], object]) -> None:
        if "one-core" in self.cases and self.systems:
            self.pinned = start_servers(self.systems, ONE_CORE)
            for server in self.pinned.values():
                warm(server)

    def stop(self) -> None:
        for server in self.pinned.values():
            server.stop()

    def run_round(self, round_no: int, servers: dict[str, Server]) -> None:
        if "contended" in self.cases:
            with cpu_hog(self.log_dir):
                if self.ceilings:
                    self.ceilings("contended", round_no, self.systems, ())
                self._points("contended", round_no, {s: servers[s] for s in self.systems})
        if "one-core" in self.cases:
            if self.ceilings:
                self.ceilings("one-core", round_no, self.systems, ONE_CORE)
            self._points("one-core", round_no, self.pinned)

    def _points(self, case: str, round_no: int, servers: dict[str, Server]) -> None:
        for n in self.connections:
            for name, server in servers.items():
                point = self.measure(name, server, n, round_no)
                self.points.append({"case": case, **asdict(point)})
                per_cpu = point.requests_per_cpu_s or 0.0
                print(
                    f"[bench] round {round_no} {case} ({name}) c={n}: {point.rps:.1f} req/s, "
                    f"{per_cpu:.1f} req per CPU-s, p50 {point.p50_ms:.0f} ms "
                    f"p99 {point.p99_ms:.0f} ms, errors {point.errors} (503: {point.shed}, "
                    f"timeouts {point.timeouts})",
                    flush=True,
                )
                waited = server.wait_idle()  # its backlog must not eat into the next point
                if waited > 2.0:
                    print(f"[bench] {name} was busy {waited:.1f} s after its point", flush=True)


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(run: dict[str, Any]) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """Medians per case ("quiet" too, from the main points), system and connection count."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    quiet = [{"case": "quiet", **p} for p in run.get("points", [])]
    for point in quiet + run.get("cases", []):
        groups.setdefault((point["case"], point["system"], point["connections"]), []).append(point)
    out: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for (case, system, n), points in sorted(groups.items()):
        out.setdefault(case, {}).setdefault(system, {})[n] = {
            "rps": _median([p["rps"] for p in points]),
            "per_cpu": _median([p.get("requests_per_cpu_s") for p in points]),
            "p50": _median([p["p50_ms"] for p in points]),
            "p99": _median([p["p99_ms"] for p in points]),
            "errors": sum(p["errors"] for p in points),
            "shed": sum(p["shed"] for p in points),
            "timeouts": sum(p["timeouts"] for p in points),
        }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(summary: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The shared-cores targets for this API (each backend), as (target, measured, met)."""
    rows: list[tuple[str, str, bool | None]] = []
    quiet, contended, one = (summary.get(c, {}) for c in ("quiet", "contended", "one-core"))
    naive_q, naive_c = quiet.get(NAIVE, {}), contended.get(NAIVE, {})

    def add(target: str, measured: str, ok: bool | None) -> None:
        rows.append((target, measured, ok))

    for system in ("c", "cov", "c2"):
        for n, row in contended.get(system, {}).items():
            base = quiet.get(system, {}).get(n, {})
            what = f"({system}) contended c={n}:"
            per_cpu = _ratio(row["per_cpu"], base.get("per_cpu"))
            add(f"{what} req per CPU-s >= 0.9x quiet", _fmt(per_cpu, "x"), _at_least(per_cpu, 0.9))
            kept = _ratio(row["rps"], base.get("rps"))
            naive = _ratio(naive_c.get(n, {}).get("rps"), naive_q.get(n, {}).get("rps"))
            add(
                f"{what} throughput kept (contended/quiet) >= the naive server's ({NAIVE})",
                f"{_fmt(kept, 'x')} vs {_fmt(naive, 'x')}",
                None if naive is None else _at_least(kept, naive),
            )
            spread = _ratio(row["p99"], row["p50"])
            add(f"{what} p99/p50 <= 2.0", _fmt(spread, ""), None if spread is None else spread <= 2)
        for n, row in one.get(system, {}).items():
            what = f"({system}) one core c={n}:"
            kept = _ratio(row["rps"], quiet.get(system, {}).get(n, {}).get("rps"))
            add(f"{what} >= 0.45x its two-core throughput", _fmt(kept, "x"), _at_least(kept, 0.45))
            if n >= 64:
                bad = row["errors"] - row["shed"]
                add(
                    f"{what} only 200s or 503s, no client timeouts",
                    f"{bad} other errors ({row['timeouts']} timeouts)",
                    bad == 0,
                )
    return rows


def _at_least(value: float | None, bar: float) -> bool | None:
    return None if value is None else value >= bar


def _fmt(value: float | None, suffix: str) -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def case_ceilings(run: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per case (quiet too), each (a) by label at the cases' ceiling batch size: images/s,
    images per CPU-second and the API systems it bounds."""
    size = str(run.get("options", {}).get("case_ceiling_batch", CASE_CEILING_BATCH))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for case in ("quiet", *CASES):
        for name, figures in ceiling.summarise(run, case).items():
            if size in figures["by_batch"]:
                out.setdefault(case, {})[name] = {
                    "rps": figures["by_batch"][size], "per_cpu": figures["per_cpu"].get(size),
                    "systems": figures["systems"], "batch": size,
                }  # fmt: skip
    return out


def _own_ratio(ceilings: dict[str, dict[str, Any]], system: str, rps: float | None) -> str:
    mine = next((c for c in ceilings.values() if system in c["systems"]), None)
    return _fmt(_ratio(rps, mine["rps"] if mine else None), "x")


def _case_rows(
    case: str,
    per_system: dict[str, Any],
    ceilings: dict[str, dict[str, Any]],
    names: dict[str, str],
) -> list[str]:
    """One case's rows: its ceilings (img/s), then each server with its ratio to its own."""
    lines = []
    for name, c in ceilings.items():
        per_cpu = "-" if c["per_cpu"] is None else f"{c['per_cpu']:.1f}"
        lines.append(
            f"| {case} | {name} | batch {c['batch']} | {c['rps']:.1f} img/s | 1.00x "
            f"| {per_cpu} | | | | | |"
        )
    for system, per_conn in per_system.items():
        if system not in CASE_SYSTEMS:
            continue
        for n, row in per_conn.items():
            figures = (row[k] for k in ("per_cpu", "p50", "p99"))
            lines.append(
                f"| {case} | {names.get(system, system)} | {n} | "
                + ("-" if row["rps"] is None else f"{row['rps']:.1f}")
                + f" | {_own_ratio(ceilings, system, row['rps'])} | "
                + " | ".join("-" if v is None else f"{v:.1f}" for v in figures)
                + f" | {row['errors']} | {row['shed']} | {row['timeouts']} |"
            )
    return lines


def markdown(run: dict[str, Any], names: dict[str, str]) -> str:
    """The "Shared cores" section of RESULTS.md (empty when no case ran)."""
    if not run.get("cases"):
        return ""
    summary, ceilings = summarise(run), case_ceilings(run)
    lines = [
        "## Shared cores",
        "",
        "contended: `stress-ng --cpu 1` beside the servers (same cgroup, unpinned); one-core: "
        "the servers started under `taskset -c 0`. Req per CPU-s = 2xx answers / the server's "
        "user + system CPU seconds (/proc/PID/stat, the server and its children). Each case "
        "starts with the ceilings (a) of the backends and precisions its API rows serve, in "
        "their own process beside the same neighbour (or under the same `taskset`), at the "
        "batch size the API forms; x own (a) = the row's req/s over that ceiling's img/s in "
        "the same case (quiet: the quiet ceiling at the same batch size).",
        "",
        "| case | system | conn. | req/s (2xx) | x own (a) | req per CPU-s | p50 ms | p99 ms "
        "| errors | of which 503 | timeouts |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in ("quiet", *CASES):
        lines += _case_rows(case, summary.get(case, {}), ceilings.get(case, {}), names)
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for target, measured, ok in targets(summary):
        met = "n/a" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {target} | {measured} | {met} |")
    return "\n".join(lines) + "\n"
