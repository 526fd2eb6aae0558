"""How an int8 file is judged (gate, confidence, bench speed) into metrics.json ``int8`` and the
card, and the decision metadata.json ``int8`` records for the wheel's ``precision="auto"``."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kto.inference import Inference, ModelMetadata
from kto.inference.model import file_sha256

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.export import put_served_section
from cats_dogs_other.train.reporting import calibrate, champion
from cats_dogs_other.train.reporting.record import put_card_section, update_json

SOURCE_FILE = "model.onnx"
CARD_HEADING = "## int8 export (served by default; INFERENCE_PRECISION=f32 pins float32)"
CARD_HEADING_NOT_DEFAULT = "## int8 export (not the default; INFERENCE_PRECISION=int8 serves it)"
BENCH_RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results" / "results.json"
SPEED_RULE = 1.4  # int8 req/s over the f32 default's, 8 connections, one bench run
METHOD_PAGE = "docs/performance.md"


def judge(model_dir: Path, int8: Path, data: Sequence[Path], held: Any) -> dict[str, Any]:
    """Gate, served confidence and refitted calibration, each file in a folder of its own."""
    test = [(p, y) for _, p, y in held.test]
    with tempfile.TemporaryDirectory(prefix="int8-judge-") as scratch:
        f32, q = (
            _folder(model_dir, f, Path(scratch) / n)
            for f, n in ((model_dir / SOURCE_FILE, "f32"), (int8, "int8"))
        )
        gate = champion.run_gate(f32, q, data, f"{model_dir} (f32)").to_dict()
        served = {name: _served(folder, test) for name, folder in (("f32", f32), ("int8", q))}
        refit = calibrate.calibrate_model(q, [(p, y) for _, p, y in held.calibration], test)
    gate["challenger"] = f"{int8} (int8)"
    meta = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    shared = meta.get("drift_reference") or {}
    check = {
        "fitted_on": f"{refit.to_dict()['fitted_on']}, int8 answers",
        "served": meta.get("calibration"),
        "refit": refit.calibration.to_dict(),
        "test_with_refit": refit.test_after.model_dump(),
        "prediction_counts": {
            "f32": shared.get("prediction_counts"),
            "int8": dict(refit.drift.prediction_counts),
        },
    }
    return {"champion_gate": gate, "test_confidence": served, "calibration_check": check}


def _folder(model_dir: Path, onnx_file: Path, into: Path) -> Path:
    """A folder holding only ``onnx_file`` as its model.onnx: loaded in that precision."""
    into.mkdir()
    for name in ("metadata.json", "metrics.json"):
        shutil.copy(model_dir / name, into / name)
    shutil.copy(onnx_file, into / SOURCE_FILE)
    return into


def _served(folder: Path, rows: Sequence[tuple[Path, int]]) -> dict[str, Any]:
    """The card's confidence figures for what ``folder`` serves (calibrated) on ``rows``."""
    inference = Inference(folder, warmup=False)
    probs = calibrate.raw_probs(inference, [p for p, _ in rows])
    values, _ = calibrate.answers(inference, probs, inference.metadata)
    return calibrate.figures(values, np.asarray([y for _, y in rows])).model_dump()


def bench_speed(results: Path = BENCH_RESULTS) -> dict[str, Any] | None:
    """int8 over f32 median req/s at 8 connections in the committed bench run (systems
    ``int8``/``c`` before int8 was the default, ``c``/``f32`` since)."""
    if not results.is_file():
        return None
    run = json.loads(results.read_text(encoding="utf-8"))
    rps: dict[str, list[float]] = {}
    for p in run.get("points", []):
        if p.get("connections") == 8:
            rps.setdefault(p["system"], []).append(float(p["rps"]))
    pair = ("c", "f32") if "f32" in rps else ("int8", "c")
    if not all(s in rps for s in pair):
        return None
    int8, f32 = (float(np.median(rps[s])) for s in pair)
    return {
        "ratio": round(int8 / f32, 2),
        "int8_rps": round(int8, 1),
        "f32_rps": round(f32, 1),
        "run": run.get("started"),
        "model": run["environment"].get("model"),
        "machine": f"{run['environment']['cpu']}, {run['environment']['cores']} cores",
        "file": "bench/results/RESULTS.md",
    }


def rule_met(record: dict[str, Any]) -> bool:
    """The gate against float32 passed and the bench run measured ``SPEED_RULE``x or more."""
    speed = record.get("speed")
    return bool(record["champion_gate"]["passed"]) and (
        speed is not None and float(speed["ratio"]) >= SPEED_RULE
    )


def card_section(record: dict[str, Any]) -> str:
    check = record.get("calibration_check")
    rows = [(f"test, {k}, shared calibration", v) for k, v in record["test_confidence"].items()]
    if check is not None:
        rows.append(("test, int8, calibration fitted on int8", check["test_with_refit"]))
    heading = CARD_HEADING if rule_met(record) else CARD_HEADING_NOT_DEFAULT
    gate = champion.table(record["champion_gate"]).split("\n", 1)[1].strip("\n")
    return (
        f"{heading}\n\n{_what(record)}\n\n{_why(record)}\n\n{gate}\n\nConfidence on the test "
        f"split, calibration shared with float32:\n\n{calibrate.figures_table(rows)}\n"
        f"{_calibration(check)}"
    )


def _what(r: dict[str, Any]) -> str:
    gate = r["familiarity_gate"]
    text = (
        f"`{r['file']}` ({r['bytes'] / 1e6:.1f} MB, sha256 `{r['sha256'][:12]}…`) from "
        f"`{r['from']['file']}` ({r['method']}), calibrated on {r['calibration_photos']}; "
        f"{len(r['float32_nodes'])} nodes stay float32 (method: `{METHOD_PAGE}`)."
    )
    if gate is None:
        return text
    return text + (
        f" The familiarity gate's threshold, chosen again on int8 answers (n = {gate['n']}): "
        f"{gate['threshold_int8']} (float32: {gate['threshold_f32']}; macro recall "
        f"{gate['macro_recall_at_int8_threshold']})."
    )


def _why(r: dict[str, Any]) -> str:
    speed, passed = r.get("speed"), r["champion_gate"]["passed"]
    measured = "no committed bench run measured its speed"
    if speed is not None:
        measured = (
            f"{speed['ratio']}x the float32 default's requests per second at 8 connections "
            f"({speed['int8_rps']} against {speed['f32_rps']}; {speed['file']}, {speed['run']}, "
            f"{speed['machine']}, {speed['model']})"
        )
    facts = (
        f"the champion/challenger gate {'passed' if passed else 'failed'}; {measured}; the rule "
        f"asks for both, at least {SPEED_RULE}x"
    )
    if rule_met(r):
        return (
            "**Served by default** (`INFERENCE_PRECISION=auto`; `INFERENCE_PRECISION=f32` pins "
            f"`model.onnx`): {facts}. Both conditions hold."
        )
    return (
        "**Not the default** (`INFERENCE_PRECISION=int8` serves the int8 file): "
        f"{facts}. **The rule is not met.**"
    )


def _calibration(check: dict[str, Any] | None) -> str:
    if check is None:
        return ""
    served, refit, counts = check["served"] or {}, check["refit"], check["prediction_counts"]
    return (
        f"\nFitted again on the {check['fitted_on']}, the temperatures would be "
        f"{refit['temperature']} / {refit['fallback_temperature']} (shared: "
        f"{served.get('temperature')} / {served.get('fallback_temperature')}; last row). Test "
        f"answers per class: float32 {_counts(counts['f32'])}, int8 {_counts(counts['int8'])}.\n"
    )


def _counts(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (counts or {}).items()) or "none recorded"


def write_decision(model_dir: Path, record: dict[str, Any]) -> bool:
    """metadata.json ``int8``, the decision the wheel's ``precision="auto"`` follows; refused
    unless both files are the ones the record was made on."""
    for name, want in ((record["file"], record["sha256"]), (SOURCE_FILE, record["from"]["sha256"])):
        path = Path(model_dir) / name
        if not path.is_file() or file_sha256(path) != want:
            raise TrainingError(f"{path} is not the file the int8 record was made on")
    decision = {
        "file": record["file"],
        "sha256": record["sha256"],
        "source_sha256": record["from"]["sha256"],
        "default": rule_met(record),
    }
    update_json(Path(model_dir) / "metadata.json", {"int8": decision})
    ModelMetadata.read(Path(model_dir) / "metadata.json")  # the wheel must accept it
    return bool(decision["default"])


def write_record(model_dir: Path, record: dict[str, Any]) -> None:
    """metadata.json and metrics.json ``int8``, and the card section headed by the decision."""
    default = write_decision(model_dir, record)
    update_json(Path(model_dir) / "metrics.json", {"int8": {**record, "default": default}})
    put_card_section(model_dir, card_section(record), replaces="## int8 export")
    put_served_section(model_dir)  # its file table names the int8 file and what serves it
