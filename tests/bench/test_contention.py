"""The shared-cores report's arithmetic from given points (no server, no timing)."""

from __future__ import annotations

from typing import Any

from bench.contention import markdown, summarise, targets
from bench.harness import SYSTEMS


def _point(system: str, n: int, rps: float, per_cpu: float, p50: float, p99: float,
           **counts: int) -> dict[str, Any]:  # fmt: skip
    return {
        "system": system, "connections": n, "rps": rps, "requests_per_cpu_s": per_cpu,
        "p50_ms": p50, "p99_ms": p99, "errors": counts.get("errors", 0),
        "shed": counts.get("shed", 0), "timeouts": counts.get("timeouts", 0),
    }  # fmt: skip


RUN = {
    "points": [
        _point("b", 64, 40.0, 30.0, 900, 1500),
        _point("b2", 64, 60.0, 50.0, 600, 1000),
        _point("c", 64, 120.0, 70.0, 400, 600),
        _point("c", 64, 100.0, 60.0, 500, 800),  # a second round: medians are taken
    ],
    "cases": [
        {"case": "contended", **_point("b", 64, 30.0, 30.0, 1200, 2000)},
        {"case": "contended", **_point("b2", 64, 51.0, 50.0, 700, 1200)},
        {"case": "contended", **_point("c", 64, 88.0, 62.0, 500, 1100)},
        {"case": "one-core", **_point("c", 64, 50.0, 75.0, 900, 1500, errors=7, shed=5)},
    ],
}


def test_cases_are_summarised_next_to_the_quiet_medians():
    summary = summarise(RUN)
    assert summary["quiet"]["c"][64]["rps"] == 110.0
    assert summary["quiet"]["c"][64]["per_cpu"] == 65.0
    assert summary["contended"]["c"][64]["per_cpu"] == 62.0
    assert summary["one-core"]["c"][64]["errors"] == 7


def test_the_targets_compare_each_case_with_the_quiet_figures():
    met = {target: (measured, ok) for target, measured, ok in targets(summarise(RUN))}
    assert met["(c) contended c=64: req per CPU-s >= 0.9x quiet"] == ("0.95x", True)
    # 88/110 = 0.80 kept, against the naive server's (b') 51/60 = 0.85, not (b)'s 30/40 = 0.75
    kept = met["(c) contended c=64: throughput kept (contended/quiet) >= the naive server's (b2)"]
    assert kept == ("0.80x vs 0.85x", False)
    assert met["(c) contended c=64: p99/p50 <= 2.0"] == ("2.20", False)
    assert met["(c) one core c=64: >= 0.45x its two-core throughput"] == ("0.45x", True)
    no_timeouts = met["(c) one core c=64: only 200s or 503s, no client timeouts"]
    assert no_timeouts == ("2 other errors (0 timeouts)", False)


def test_no_case_no_section():
    assert markdown({"points": RUN["points"]}, SYSTEMS) == ""
    assert "| one-core | (c) this API | 64 | 50.0 | - | 75.0 |" in markdown(RUN, SYSTEMS)
