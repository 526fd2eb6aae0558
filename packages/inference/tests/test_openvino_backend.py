"""The OpenVINO backend (the ``openvino`` extra) on the tiny model's model.onnx: same answers as
ONNX Runtime within 1e-4, its settings applied, and ``auto``'s fallback when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from kto.inference import Inference, ModelLoadError
from kto.inference.model import AUTO_EXPORTED_BACKEND, resolve_model

from cats_dogs_other.testing.tiny_model import solid_colour_png

COLOURS = [(220, 30, 20), (25, 210, 40), (30, 20, 230), (128, 128, 128), (200, 190, 10)]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def openvino(exported_dir: Path) -> Inference:
    return Inference(exported_dir, backend="openvino", threads=1)


@pytest.fixture(scope="module")
def onnx(exported_dir: Path) -> Inference:
    return Inference(exported_dir, backend="onnx", warmup=False)


def test_openvino_reads_the_exported_onnx_file(openvino: Inference, exported_dir: Path):
    assert openvino.backend == "openvino"
    assert openvino.model_path == exported_dir / "model.onnx"
    assert type(openvino.model).__name__ == "CompiledModel"
    assert openvino.input_size == (32, 32) and openvino.metadata.name == "tiny-colour-model"


def test_openvino_agrees_with_onnx_runtime(openvino: Inference, onnx: Inference):
    pixels = np.random.default_rng(11).uniform(0, 255, (9, 32, 32, 3)).astype(np.float32)
    for n in (1, 9, 3):  # any batch size, in any order
        got, want = openvino.predict_arrays(pixels[:n]), onnx.predict_arrays(pixels[:n])
        assert got.shape == want.shape == (n, 3)
        assert np.abs(got - want).max() < TOLERANCE
    for colour in COLOURS:
        a, b = openvino.execute(solid_colour_png(colour)), onnx.execute(solid_colour_png(colour))
        assert a["prediction"] == b["prediction"]
        assert np.allclose(a["values"], b["values"], atol=TOLERANCE)


def test_openvino_is_safe_from_several_threads(openvino: Inference):
    pixels = np.random.default_rng(3).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    want = openvino.predict_arrays(pixels)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: openvino.predict_arrays(pixels), range(16)))
    for got in results:
        assert np.array_equal(got, want)


def test_openvino_runs_f32_on_the_planned_threads_unpinned(openvino: Inference):
    compiled = openvino.model
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert int(compiled.get_property("NUM_STREAMS")) == 1
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert compiled.get_property("ENABLE_CPU_PINNING") is False


def test_auto_stays_onnx_runtime(exported_dir: Path):
    assert AUTO_EXPORTED_BACKEND == "onnx"
    assert resolve_model(exported_dir) == ("onnx", exported_dir / "model.onnx")
    assert resolve_model(exported_dir / "model.onnx", "openvino")[0] == "openvino"


def test_auto_picks_openvino_when_chosen_and_installed(
    exported_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("kto.inference.model.AUTO_EXPORTED_BACKEND", "openvino")
    assert resolve_model(exported_dir)[0] == "openvino"


def test_openvino_needs_the_exported_model(exported_dir: Path):
    with pytest.raises(ModelLoadError, match=r"the openvino backend needs its exported model"):
        Inference(exported_dir / "model.keras", backend="openvino")


def _run(code: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)


@pytest.mark.process
def test_without_openvino_auto_falls_back_and_a_forced_choice_names_the_extra(
    exported_dir: Path,
):
    """As in the default serving install: ``import openvino`` fails."""
    _run(
        "import sys; sys.modules['openvino'] = None\n"
        "import kto.inference.model as model\n"
        "from kto.inference import Inference, ModelLoadError\n"
        "model.AUTO_EXPORTED_BACKEND = 'openvino'\n"
        f"inf = Inference({str(exported_dir)!r})\n"
        "assert inf.backend == 'onnx', inf.backend\n"
        "try:\n"
        f"    Inference({str(exported_dir)!r}, backend='openvino')\n"
        "except ModelLoadError as exc:\n"
        '    assert "kto-keras-inference[openvino]" in str(exc), exc\n'
        "else:\n"
        "    raise SystemExit('loaded with OpenVINO while it cannot be imported')\n"
    )


@pytest.mark.process
def test_the_openvino_path_calls_nobody_and_never_imports_tensorflow(
    exported_dir: Path, tmp_path: Path
):
    """Offline first: OpenVINO's telemetry package is installed beside it and must stay quiet:
    no socket, no process (its sender runs in a forked child), nothing in the home folder."""
    home = tmp_path / "home"
    home.mkdir()
    calls = ("socket.", "os.fork", "os.posix_spawn", "os.exec", "subprocess.")
    _run(
        "import sys, time; events = []\n"
        f"sys.addaudithook(lambda e, a: events.append(e) if e.startswith({calls!r}) else None)\n"
        "from kto.inference import Inference\n"
        "from cats_dogs_other.testing.tiny_model import solid_colour_png\n"
        f"inf = Inference({str(exported_dir)!r}, backend='openvino')\n"
        "assert inf.execute(solid_colour_png((220, 30, 20)))['prediction'] == 'Cat'\n"
        "time.sleep(0.5)  # the telemetry sender runs from a thread pool\n"
        "assert not events, events\n"
        "assert 'openvino_telemetry' not in [m for m in sys.modules if sys.modules[m]]\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n",
        env={**os.environ, "HOME": str(home), "CI": "false"},
    )
    assert list(home.iterdir()) == []
