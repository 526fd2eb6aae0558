"""The int8 export: it runs, loads through the wheel and agrees with float32 on the argmax;
the bundled int8 file keeps its head and familiarity gate in float32."""

from __future__ import annotations

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
from cats_dogs_other.train.versions import BUNDLED_MODEL
from tests.conftest import TINY_COLOURS

QUANTIZE_OPS = {"QuantizeLinear", "DequantizeLinear"}


def test_the_int8_export_runs_loads_and_agrees_on_the_argmax(tiny_int8_model: Path) -> None:
    graph = onnx.load(str(tiny_int8_model / INT8_FILE)).graph
    assert {n.op_type for n in graph.node} >= QUANTIZE_OPS
    f32 = Inference(tiny_int8_model)
    int8 = Inference(tiny_int8_model, precision="int8")
    assert int8.model_path.name == INT8_FILE and int8.backend == "onnx"
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
    f32 = Inference(BUNDLED_MODEL, warmup=False)
    int8 = Inference(BUNDLED_MODEL, warmup=False, precision="int8")
    images = [solid_colour_png(c, size=(224, 224)) for c in TINY_COLOURS]
    a, b = f32.execute_batch(images), int8.execute_batch(images)
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b]
    assert np.isfinite([r["values"] for r in b]).all()


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
    assert (folder / INT8_FILE).is_file() and (folder / "metrics.json").read_text() == before
