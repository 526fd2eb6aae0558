"""The bench's int8-default row from given points (no server, no timing): (c) serves the
default precision, ``f32`` pins float32, and the row also needs the model's gate result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.harness import _drop_f32_if_default, _int8_gate
from bench.report import summarise

ROW = "int8 default >= 1.4 x the f32 default at 8 connections (same run) and the gate passed"


def _point(system: str, rps: float) -> dict[str, Any]:
    return {
        "system": system, "connections": 8, "rps": rps, "p50_ms": 30.0, "p99_ms": 45.0,
        "errors": 0, "shed": 0, "timeouts": 0, "avg_batch": 8.0, "rss_mib": 200.0,
        "health_p99_ms": None,
    }  # fmt: skip


def _row(default_rps: float, f32_rps: float, gate: bool | None) -> dict[str, Any]:
    run = {
        "ceiling": [], "environment": {"int8_gate": gate},
        "points": [_point("c", default_rps), _point("f32", f32_rps), _point("f32", f32_rps)],
    }  # fmt: skip
    return next(t for t in summarise(run)["targets"] if t["target"] == ROW)


@pytest.mark.parametrize(
    ("default_rps", "gate", "measured", "ok"),
    [
        (243.5, True, "1.82 x, gate passed", True),
        (243.5, False, "1.82 x, gate failed", False),
        (243.5, None, "1.82 x, gate unknown", False),
        (160.0, True, "1.19 x, gate passed", False),
    ],
)
def test_the_row_needs_the_ratio_and_the_gate(
    default_rps: float, gate: bool | None, measured: str, ok: bool
) -> None:
    row = _row(default_rps, 134.0, gate)
    assert (row["measured"], row["ok"]) == (measured, ok)


def test_the_gate_is_read_from_the_model_folder_and_f32_runs_only_beside_int8(
    tmp_path: Path,
) -> None:
    assert _int8_gate(tmp_path) is None
    (tmp_path / "metrics.json").write_text('{"int8": {"champion_gate": {"passed": true}}}')
    assert _int8_gate(tmp_path) is True
    systems = ["c", "int8"]
    assert _drop_f32_if_default(systems, tmp_path)[-1].endswith("has no model.int8.onnx")
    assert systems == ["c"]
    (tmp_path / "model.int8.onnx").write_bytes(b"")
    systems = ["c", "f32"]
    assert _drop_f32_if_default(systems, tmp_path) == [] and systems == ["c", "f32"]
