"""The ceilings per backend and precision: which ones a run needs, their labels, the command
line, and how the reports set each API row beside its own (given figures, no timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import ceiling
from bench.ceiling import Spec, label, parse_args, specs_for
from bench.contention import markdown as shared_cores
from bench.harness import SYSTEMS
from bench.report import summarise, table
from cats_dogs_other.testing.images import png

BUNDLED = Path(__file__).resolve().parents[2] / "cats_dogs_other" / "model"


def test_one_ceiling_per_backend_and_precision_the_api_systems_serve():
    envs = {
        "c": {}, "c2": {"WORKERS": "2"}, "f32": {"INFERENCE_PRECISION": "f32"},
        "cov": {"INFERENCE_BACKEND": "openvino"}, "d": {"INFERENCE_BACKEND": "keras"},
    }  # fmt: skip
    found = specs_for(["b", "c", "f32", "cov", "c2", "d"], envs)
    assert found == {
        Spec(): ["c", "c2"],
        Spec("auto", "f32"): ["f32"],
        Spec("openvino", "auto"): ["cov"],
        Spec("keras", "auto"): ["d"],
    }
    assert specs_for(["b"], envs) == {Spec(): []}  # (a) alone: the default's


def test_labels_name_the_runtime_and_precision():
    assert label("onnx", "int8") == "(a) ceiling, ORT int8"
    assert label("openvino", "f32") == "(a) ceiling, OpenVINO f32"
    assert label("keras", "f32") == "(a) ceiling, TensorFlow f32"
    assert label(None, None) == "(a) ceiling"


def test_the_command_line_chooses_backend_and_precision(monkeypatch: pytest.MonkeyPatch):
    base = ["--model", "m", "--image", "i"]
    args = parse_args([*base, "--backend", "openvino", "--precision", "f32"])
    assert (args.backend, args.precision) == ("openvino", "f32")
    monkeypatch.setenv("INFERENCE_BACKEND", "onnx")
    monkeypatch.setenv("INFERENCE_PRECISION", "int8")
    assert (parse_args(base).backend, parse_args(base).precision) == ("onnx", "int8")
    with pytest.raises(SystemExit):
        parse_args([*base, "--precision", "int4"])


@pytest.mark.skipif(not (BUNDLED / "model.onnx").is_file(), reason="no bundled model.onnx")
def test_the_ceiling_process_reports_what_it_ran(tmp_path: Path):
    from kto.inference.model import resolve_precision

    image = tmp_path / "image.png"
    image.write_bytes(png((200, 120, 40)))
    pinned = ceiling.run(BUNDLED, image, 0.05, "1,2", Spec("onnx", "f32"))
    assert (pinned["backend"], pinned["precision"]) == ("onnx", "f32")
    assert set(pinned["images_per_s"]) == set(pinned["images_per_cpu_s"]) == {"1", "2"}
    default = ceiling.run(BUNDLED, image, 0.05, "1", Spec())
    assert default["precision"] == resolve_precision(BUNDLED)  # auto, as the API resolves it


def _point(system: str, n: int, rps: float) -> dict[str, Any]:
    return {
        "system": system, "connections": n, "rps": rps, "requests_per_cpu_s": rps / 2,
        "p50_ms": 30.0, "p99_ms": 40.0, "errors": 0, "shed": 0, "timeouts": 0,
        "avg_batch": 8.0, "rss_mib": 200.0, "health_p99_ms": None,
    }  # fmt: skip


def _ceiling(case: str, round_no: int, backend: str, precision: str, systems: list[str],
             figures: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    return {
        "case": case, "round": round_no, "systems": systems, "backend": backend,
        "precision": precision, "images_per_s": figures,
        "images_per_cpu_s": {k: v / 2 for k, v in figures.items()},
    }  # fmt: skip


RUN = {
    "environment": {},
    "options": {"case_ceiling_batch": "8"},
    "points": [_point("c", 8, 200.0), _point("cov", 8, 100.0), _point("f32", 8, 130.0)],
    "ceilings": [
        _ceiling("quiet", 1, "onnx", "int8", ["c"], {"1": 150.0, "8": 250.0}),
        _ceiling("quiet", 2, "onnx", "int8", ["c"], {"1": 160.0, "8": 230.0}),  # median 240
        _ceiling("quiet", 1, "openvino", "f32", ["cov"], {"1": 90.0, "8": 125.0}),
        _ceiling("quiet", 1, "onnx", "f32", ["f32"], {"1": 100.0, "8": 140.0}),
        _ceiling("contended", 1, "onnx", "int8", ["c"], {"8": 160.0}),
        _ceiling("contended", 1, "openvino", "f32", ["cov"], {"8": 100.0}),
    ],
    "cases": [
        {"case": "contended", **_point("c", 8, 120.0)},
        {"case": "contended", **_point("cov", 8, 90.0)},
    ],
}


def test_each_api_system_is_held_to_its_own_ceiling():
    summary = summarise(RUN)
    assert summary["ceilings"]["(a) ceiling, ORT int8"]["best"] == 240.0
    assert summary["ceiling"]["label"] == "(a) ceiling, ORT int8"  # (c)'s, the plot's line
    met = {t["target"]: (t["measured"], t["ok"]) for t in summary["targets"]}
    assert met["(c) >= 0.85 x (a) ceiling, ORT int8 at 8 connections"] == ("0.83 x", False)
    assert met["(cov) >= 0.85 x (a) ceiling, OpenVINO f32 at 8 connections"] == ("0.80 x", False)
    assert met["(f32) >= 0.85 x (a) ceiling, ORT f32 at 8 connections"] == ("0.93 x", True)
    rendered = table(summary, SYSTEMS)
    assert "| (a) ceiling, ORT int8 | batch 8 | 240.0 img/s |" in rendered
    assert "| (a) ceiling, OpenVINO f32 | batch 1 | 90.0 img/s |" in rendered


def test_each_case_shows_its_ceilings_beside_its_api_rows():
    section = shared_cores(RUN, SYSTEMS)
    assert "| contended | (a) ceiling, ORT int8 | batch 8 | 160.0 img/s | 1.00x | 80.0 |" in section
    assert "| contended | (c) this API | 8 | 120.0 | 0.75x | 60.0 |" in section  # 120 / 160
    assert "| contended | (c) this API, OpenVINO | 8 | 90.0 | 0.90x |" in section
    assert "| quiet | (c) this API | 8 | 200.0 | 0.83x |" in section  # 200 / 240, batch 8


def test_a_run_from_before_per_backend_ceilings_still_renders():
    old = {"environment": {}, "points": [_point("c", 8, 120.0)],
           "ceiling": [{"1": 100.0, "8": 150.0}]}  # fmt: skip
    summary = summarise(old)
    assert "| (a) ceiling | batch 8 | 150.0 img/s |" in table(summary, SYSTEMS)
    met = {t["target"]: t["measured"] for t in summary["targets"]}
    assert met["(c) >= 0.85 x (a) ceiling at 8 connections"] == "0.80 x"
