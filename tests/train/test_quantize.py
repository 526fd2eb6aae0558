"""The int8 export: it runs, loads through the wheel and agrees with float32 on the argmax;
the bundled int8 file keeps its head and familiarity gate in float32."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from kto.inference import Inference, ModelLoadError

from cats_dogs_other.testing.tiny_model import save_tiny_model, solid_colour_png
from cats_dogs_other.train.cli import main
from cats_dogs_other.train.quantize import (
    INT8_FILE,
    find_gate,
    gate_threshold,
    head_nodes,
    set_gate_threshold,
)
from cats_dogs_other.train.reporting.int8 import (
    CARD_HEADING,
    CARD_HEADING_NOT_DEFAULT,
    SPEED_RULE,
    bench_speed,
    card_section,
    write_record,
)
from cats_dogs_other.train.versions import BUNDLED_MODEL
from tests.conftest import TINY_COLOURS, record_int8

QUANTIZE_OPS = {"QuantizeLinear", "DequantizeLinear"}


def test_the_int8_export_runs_loads_and_agrees_on_the_argmax(tiny_int8_model: Path) -> None:
    graph = onnx.load(str(tiny_int8_model / INT8_FILE)).graph
    assert {n.op_type for n in graph.node} >= QUANTIZE_OPS
    f32 = Inference(tiny_int8_model, precision="f32")
    int8 = Inference(tiny_int8_model)  # auto: the folder's quantized file, on ONNX Runtime
    assert (int8.model_path.name, int8.backend, int8.precision) == (INT8_FILE, "onnx", "int8")
    assert (f32.model_path.name, f32.precision) == ("model.onnx", "f32")
    assert Inference(tiny_int8_model, backend="keras").precision == "f32"
    images = [solid_colour_png(c) for c in TINY_COLOURS]
    expected = [r["prediction"] for r in f32.execute_batch(images)]
    assert [r["prediction"] for r in int8.execute_batch(images)] == expected
    assert expected[:3] == ["Cat", "Dog", "Other"]


def test_int8_without_the_file_is_one_clear_error(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m", onnx=True).parent
    with pytest.raises(ModelLoadError, match=f"has no {INT8_FILE}: quantize the model"):
        Inference(folder, precision="int8")
    with pytest.raises(ModelLoadError, match="keras runs float32 only"):
        Inference(folder, precision="int8", backend="keras")
    with pytest.raises(ValueError, match="precision must be one of"):
        Inference(folder, precision="int4")  # type: ignore[arg-type]


def test_the_head_starts_at_the_last_pool(tiny_int8_model: Path) -> None:
    model = onnx.load(str(tiny_int8_model / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "GlobalAveragePool" not in ops and head_nodes(model) == []
    pool = ops.index("ReduceMean")  # the tiny model's mean colour
    assert head_nodes(model, start="ReduceMean") == [n.name for n in model.graph.node][pool:]


@pytest.mark.skipif(not (BUNDLED_MODEL / INT8_FILE).is_file(), reason="no bundled model.int8.onnx")
def test_the_bundled_int8_file_keeps_head_and_gate_in_float32() -> None:
    model = onnx.load(str(BUNDLED_MODEL / INT8_FILE))
    producers = {out: n for n in model.graph.node for out in n.output}
    kept = set(head_nodes(model))
    assert {"Softmax", "Sigmoid", "ReduceMax"} <= {
        n.op_type for n in model.graph.node if n.name in kept
    }
    assert not [n for n in model.graph.node if n.name in kept and n.op_type in QUANTIZE_OPS]
    quantized = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(quantized) > 50  # the backbone's convolutions
    gate = find_gate(model)
    assert gate is not None and gate_threshold(model, gate) == (100.0, 0.6)
    assert producers[gate.similarity].op_type == "ReduceMax"
    set_gate_threshold(model, gate, 0.55)
    assert gate_threshold(model, gate) == (100.0, 0.55)


@pytest.mark.skipif(not (BUNDLED_MODEL / INT8_FILE).is_file(), reason="no bundled model.int8.onnx")
def test_the_bundled_int8_model_serves_like_float32_on_the_colour_images() -> None:
    f32 = Inference(BUNDLED_MODEL, warmup=False, precision="f32")
    int8 = Inference(BUNDLED_MODEL, warmup=False)
    assert (int8.model_path.name, int8.precision) == (INT8_FILE, "int8")
    images = [solid_colour_png(c, size=(224, 224)) for c in TINY_COLOURS]
    a, b = f32.execute_batch(images), int8.execute_batch(images)
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b]
    assert np.isfinite([r["values"] for r in b]).all()


@pytest.mark.slow
def test_the_quantize_command_on_the_shared_data(
    shared_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end on a copy of the bundled folder: train-split calibration, the gate's
    threshold chosen again, the champion/challenger table against float32; --dry-run leaves
    metrics.json and the card alone."""
    data, _ = shared_data
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.onnx", "metadata.json", "metrics.json", "MODEL_CARD.md"):
        shutil.copy(BUNDLED_MODEL / name, folder / name)
    before = (folder / "metrics.json").read_text()
    sources = [data.parent / s for s in ("cats_dogs_other", "pets_breeds", "imagenet_samples")]
    argv = ["quantize", "--model", str(folder), "--photos", "32", "--dry-run"]
    assert main([*argv, *(a for s in sources for a in ("--data", str(s)))]) == 0
    out = capsys.readouterr().out
    assert "## int8 export" in out and "| all | 532 | 522 |" in out
    assert "familiarity gate's threshold, chosen again" in out
    assert "**Served by default**" in out and "int8 answers, the temperatures would be" in out
    assert (folder / INT8_FILE).is_file() and (folder / "metrics.json").read_text() == before


def _bench_run(path: Path, systems: dict[str, list[float]]) -> Path:
    points = [
        {"system": s, "connections": c, "rps": r if c == 8 else 1.0}
        for s, rounds in systems.items()
        for r in rounds
        for c in (1, 8)
    ]
    environment = {"cpu": "AMD EPYC", "cores": 2, "model": "m"}
    run = {"started": "2026-12-06 09:14 UTC", "environment": environment, "points": points}
    path.write_text(json.dumps(run))
    return path


def test_the_speed_ratio_is_read_from_either_layout_of_a_bench_run(tmp_path: Path) -> None:
    """Before int8 was the default the run had (c) = f32 and an int8 system; now (c) is the
    default (int8) and an f32 system pins float32. Medians of the rounds, 8 connections."""
    before = bench_speed(
        _bench_run(tmp_path / "a.json", {"c": [130, 134, 145], "int8": [243, 250, 232]})
    )
    now = bench_speed(
        _bench_run(tmp_path / "b.json", {"c": [243, 250, 232], "f32": [130, 134, 145]})
    )
    assert before == now and before is not None
    assert (before["ratio"], before["int8_rps"], before["f32_rps"]) == (1.81, 243.0, 134.0)
    assert bench_speed(_bench_run(tmp_path / "c.json", {"c": [1.0]})) is None
    assert bench_speed(tmp_path / "absent.json") is None


@pytest.mark.parametrize(
    ("passed", "ratio", "met"), [(True, 1.82, True), (True, 1.2, False), (False, 1.82, False)]
)
def test_the_card_says_why_int8_is_served_and_when_the_rule_is_not_met(
    passed: bool, ratio: float, met: bool
) -> None:
    record = json.loads((BUNDLED_MODEL / "metrics.json").read_text())["int8"]
    record["champion_gate"]["passed"] = passed
    record["speed"] = {
        **(record.get("speed") or {}),
        "ratio": ratio,
        "int8_rps": 1,
        "f32_rps": 1,
        "file": "bench/results/RESULTS.md",
        "run": "r",
        "machine": "m",
        "model": "m",
    }
    card = card_section(record)
    assert f"{ratio}x the float32 default's requests per second" in card
    assert ("Both conditions hold." in card) is met and (f"at least {SPEED_RULE}x" in card)
    assert ("**The rule is not met.**" in card) is not met
    assert ("INFERENCE_PRECISION=f32` pins `model.onnx`" in card) is met
    assert card.startswith(CARD_HEADING if met else CARD_HEADING_NOT_DEFAULT)
    assert ("`INFERENCE_PRECISION=int8` serves the int8 file" in card) is not met


def _record_for(folder: Path, passed: bool, ratio: float | None) -> dict:
    """The bundled folder's metrics.json ``int8`` record, made about ``folder``'s files."""
    from kto.inference.model import file_sha256

    record = json.loads((BUNDLED_MODEL / "metrics.json").read_text())["int8"]
    record["sha256"] = file_sha256(folder / INT8_FILE)
    record["from"]["sha256"] = file_sha256(folder / "model.onnx")
    record["champion_gate"]["passed"] = passed
    record["speed"] = None if ratio is None else {**record["speed"], "ratio": ratio}
    return record


@pytest.mark.parametrize(
    ("passed", "ratio", "default"),
    [
        (True, 1.82, True),
        (True, SPEED_RULE, True),
        (True, 1.39, False),
        (True, None, False),
        (False, 1.82, False),
    ],
)
def test_quantize_records_the_decision_the_wheel_follows(
    tiny_int8_model: Path, tmp_path: Path, passed: bool, ratio: float | None, default: bool
) -> None:
    """metadata.json ``int8``: default only when the gate passed and the bench speed is
    known and at least 1.4x; auto serves what it says; the card's heading says the same."""
    folder = shutil.copytree(tiny_int8_model, tmp_path / "m")
    (folder / "metrics.json").write_text("{}")
    write_record(folder, _record_for(folder, not passed, 1.82))  # the opposite verdict first
    write_record(folder, _record_for(folder, passed, ratio))
    meta = json.loads((folder / "metadata.json").read_text())["int8"]
    assert meta == {
        "file": INT8_FILE,
        "sha256": hashlib.sha256((folder / INT8_FILE).read_bytes()).hexdigest(),
        "source_sha256": hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest(),
        "default": default,
    }
    assert json.loads((folder / "metrics.json").read_text())["int8"]["default"] is default
    served = Inference(folder, warmup=False)
    assert (served.precision, served.model_path.name) == (
        ("int8", INT8_FILE) if default else ("f32", "model.onnx")
    )
    card = (folder / "MODEL_CARD.md").read_text()
    assert card.count("## int8 export") == 1
    assert (CARD_HEADING if default else CARD_HEADING_NOT_DEFAULT) in card


def test_a_record_about_other_files_is_refused(tiny_int8_model: Path, tmp_path: Path) -> None:
    from cats_dogs_other.train.errors import TrainingError

    folder = shutil.copytree(tiny_int8_model, tmp_path / "m")
    record = _record_for(folder, True, 1.82)
    record["from"]["sha256"] = "0" * 64
    with pytest.raises(TrainingError, match=r"model\.onnx is not the file the int8 record"):
        write_record(folder, record)


def test_model_onnx_exported_again_makes_the_int8_file_stale(
    tiny_int8_model: Path, tmp_path: Path
) -> None:
    """``train export`` writes a new model.onnx into a folder that keeps its model.int8.onnx and
    int8 record (built from the old model.onnx): auto serves the new model.onnx in f32 and
    says why; pinning int8 is refused."""
    from cats_dogs_other.train.export import export_model

    folder = shutil.copytree(tiny_int8_model, tmp_path / "m")
    assert Inference(folder, warmup=False).precision == "int8"
    other = save_tiny_model(tmp_path / "other", dense=(np.eye(3) * 2.0, np.zeros(3)))
    shutil.copy(other, folder / "model.keras")
    images = [solid_colour_png(c) for c in TINY_COLOURS]
    export_model(folder, images, source="colours")
    assert json.loads((folder / "metadata.json").read_text())["int8"]["default"] is True
    served = Inference(folder, warmup=False)
    assert (served.precision, served.model_path.name) == ("f32", "model.onnx")
    assert served.precision_reason.endswith(f"{INT8_FILE} was built from another model.onnx")
    with pytest.raises(ModelLoadError, match="precision int8 refused"):
        Inference(folder, warmup=False, precision="int8")


def test_the_card_names_what_is_served_and_each_file_hash(
    tiny_int8_model: Path, tmp_path: Path
) -> None:
    """The card's served-runtime section follows metadata.json, as /model does: the int8 file
    served by default is listed with its hash above model.onnx; model.onnx exported again makes
    the int8 file one that is not served."""
    from kto.inference.model import file_sha256

    from cats_dogs_other.train.export import CARD_HEADING as SERVED
    from cats_dogs_other.train.export import export_model

    def served_rows() -> list[str]:
        section = (folder / "MODEL_CARD.md").read_text().split(SERVED, 1)[1].split("\n## ")[0]
        return [line for line in section.splitlines() if line.startswith("| `model")]

    folder = shutil.copytree(tiny_int8_model, tmp_path / "m")
    (folder / "metrics.json").write_text("{}")
    (folder / "MODEL_CARD.md").write_text("# Model card\n")
    images = [solid_colour_png(c) for c in TINY_COLOURS]
    export_model(folder, images, source="colours")
    write_record(folder, _record_for(folder, True, 1.82))
    int8_sha, onnx_sha = (file_sha256(folder / name) for name in (INT8_FILE, "model.onnx"))
    assert served_rows()[:2] == [
        f"| `{INT8_FILE}` | served by default | `{int8_sha}` |",
        f"| `model.onnx` | served with `INFERENCE_PRECISION=f32` | `{onnx_sha}` |",
    ]
    assert Inference(folder, warmup=False).sha256 == int8_sha
    other = save_tiny_model(tmp_path / "other", dense=(np.eye(3) * 2.0, np.zeros(3)))
    shutil.copy(other, folder / "model.keras")
    export_model(folder, images, source="colours")
    assert served_rows()[:2] == [
        f"| `{INT8_FILE}` | built from another `model.onnx`: not served | `{int8_sha}` |",
        f"| `model.onnx` | served | `{file_sha256(folder / 'model.onnx')}` |",
    ]


@pytest.fixture
def swapped_int8(tiny_int8_model: Path, tmp_path: Path) -> tuple[Path, list[tuple[Path, int]]]:
    """A folder whose int8 file, recorded as the default, is a model that swaps Cat and Dog
    (answers read from it are wrong on the red and green photos), and three labelled photos."""
    folder = shutil.copytree(tiny_int8_model, tmp_path / "m")
    swapped = save_tiny_model(
        tmp_path / "swapped", onnx=True, dense=(np.eye(3)[[1, 0, 2]] * 10, np.zeros(3))
    )
    shutil.copy(swapped.parent / "model.onnx", folder / INT8_FILE)
    assert record_int8(folder, passed=True, ratio=1.82) is True
    assert Inference(folder, warmup=False).precision == "int8"
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = []
    for i, colour in enumerate(TINY_COLOURS[:3]):
        (photos / f"{i}.png").write_bytes(solid_colour_png(colour))
        rows.append((photos / f"{i}.png", i))
    return folder, rows


def test_calibration_fits_on_the_float32_answers_whatever_auto_serves(
    swapped_int8: tuple[Path, list[tuple[Path, int]]],
) -> None:
    """metadata.json's calibration is the float32 model's: ``train calibrate`` reads
    model.onnx even where auto serves int8."""
    from cats_dogs_other.train.reporting.calibrate import calibrate_model

    folder, rows = swapped_int8
    report = calibrate_model(folder, rows, rows)
    assert report.test_before.mistakes == 0
    assert dict(report.drift.prediction_counts) == {"Cat": 1, "Dog": 1, "Other": 1}


def test_the_champion_side_of_the_gate_is_the_model_in_service(
    swapped_int8: tuple[Path, list[tuple[Path, int]]],
) -> None:
    """The gate judges a champion folder by what the API serves it as (auto): its int8 file
    while the record makes it the default, model.onnx once it does not."""
    from cats_dogs_other.train.reporting.champion import answers

    folder, rows = swapped_int8
    paths, classes = [p for p, _ in rows], ("Cat", "Dog", "Other")
    assert answers(folder, paths, classes) == [1, 0, 2]
    assert record_int8(folder, passed=True, ratio=1.2) is False
    assert answers(folder, paths, classes) == [0, 1, 2]
