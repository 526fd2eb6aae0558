"""Both backends: which one a path selects, that they answer alike, and that ONNX needs no TF."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kto.inference import Inference, ModelLoadError

from cats_dogs_other.testing.tiny_model import save_tiny_model, solid_colour_png

COLOURS = [(220, 30, 20), (25, 210, 40), (30, 20, 230), (128, 128, 128), (200, 190, 10)]


@pytest.fixture(scope="module")
def pair(exported_dir: Path) -> tuple[Inference, Inference]:
    return Inference(exported_dir, warmup=False), Inference(exported_dir, backend="keras")


def test_a_folder_with_an_export_is_served_by_onnx_runtime(exported_dir: Path):
    inf = Inference(exported_dir, warmup=False)
    assert inf.backend == "onnx"
    assert inf.model_path == exported_dir / "model.onnx"
    assert type(inf.model).__name__ == "InferenceSession"
    assert inf.metadata.name == "tiny-colour-model"  # the folder's metadata.json


@pytest.mark.parametrize(
    ("target", "backend", "expected"),
    [
        ("model.keras", "auto", "keras"),
        ("model.onnx", "auto", "onnx"),
        (".", "keras", "keras"),
        (".", "onnx", "onnx"),
    ],
)
def test_a_file_or_an_explicit_backend_decides(
    exported_dir: Path, target: str, backend: str, expected: str
):
    inf = Inference(exported_dir / target, backend=backend, warmup=False)  # type: ignore[arg-type]
    assert inf.backend == expected
    assert inf.model_path.suffix == (".onnx" if expected == "onnx" else ".keras")


@pytest.mark.parametrize(
    ("target", "backend", "message"),
    [
        ("model.keras", "onnx", r"is a Keras model; the onnx backend needs its exported"),
        ("model.onnx", "keras", r"is an ONNX model; the keras backend needs a \.keras file"),
    ],
)
def test_a_forced_backend_that_cannot_run_the_file_is_refused(
    exported_dir: Path, target: str, backend: str, message: str
):
    with pytest.raises(ModelLoadError, match=message):
        Inference(exported_dir / target, backend=backend, warmup=False)  # type: ignore[arg-type]


def test_forcing_onnx_on_a_keras_only_folder_says_to_export(keras_model_path: Path):
    with pytest.raises(ModelLoadError, match=r"no model\.onnx in directory .*export"):
        Inference(keras_model_path.parent, backend="onnx")


def test_an_unknown_backend_name_is_a_value_error(exported_dir: Path):
    with pytest.raises(ValueError, match="backend must be"):
        Inference(exported_dir, backend="tflite")  # type: ignore[arg-type]


def test_both_backends_agree_on_the_tiny_model(pair: tuple[Inference, Inference]):
    onnx, keras = pair
    rng = np.random.default_rng(7)
    pixels = rng.uniform(0, 255, (9, 32, 32, 3)).astype(np.float32)
    assert np.abs(onnx.predict_arrays(pixels) - keras.predict_arrays(pixels)).max() < 1e-5
    for colour in COLOURS:
        a, b = onnx.execute(solid_colour_png(colour)), keras.execute(solid_colour_png(colour))
        assert a["prediction"] == b["prediction"]
        assert np.allclose(a["values"], b["values"], atol=1e-6)


def test_onnx_keeps_the_colour_rule_and_the_result_contract(pair: tuple[Inference, Inference]):
    onnx, _ = pair
    for expected, colour in zip(("Cat", "Dog", "Other"), COLOURS, strict=False):
        result = onnx.execute(solid_colour_png(colour))
        assert result["prediction"] == expected and max(result["values"]) > 0.95
        assert all(type(v) is float for v in result["values"])
    batch = onnx.execute_batch([solid_colour_png(c) for c in COLOURS])
    for got, colour in zip(batch, COLOURS, strict=True):
        alone = onnx.execute(solid_colour_png(colour))
        assert got["prediction"] == alone["prediction"]
        assert np.allclose(got["values"], alone["values"], atol=1e-6)


def test_onnx_applies_the_metadata_preprocessing(exported_dir: Path, tmp_path: Path):
    """The exported graph is the model alone: normalisation comes from metadata.json."""
    shutil.copytree(exported_dir, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    meta["preprocessing"] = {"mode": "scale", "scale": -1 / 127.5, "offset": 1.0}  # inverted
    (tmp_path / "m" / "metadata.json").write_text(json.dumps(meta))
    for backend in ("onnx", "keras"):
        inf = Inference(tmp_path / "m", backend=backend, warmup=False)
        assert inf.execute(solid_colour_png((220, 30, 20)))["prediction"] != "Cat"


def test_onnx_threads_size_the_session(exported_dir: Path):
    inf = Inference(exported_dir, threads=1, warmup=False)
    assert inf.model.get_session_options().intra_op_num_threads == 1


def test_onnx_defaults_to_the_thread_plan_and_never_spins(
    exported_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("kto.inference.cpus.usable_cpus", lambda: 3)
    options = Inference(exported_dir, warmup=False).model.get_session_options()
    assert options.intra_op_num_threads == 3  # the plan's, not the machine's physical cores
    for pool in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"


def test_a_course_style_export_without_metadata_gets_the_fallback(tmp_path: Path):
    save_tiny_model(tmp_path, input_size=(24, 24), with_metadata=False, onnx=True)
    inf = Inference(tmp_path, warmup=False)
    assert inf.backend == "onnx" and inf.metadata.source == "fallback"
    assert inf.input_size == (24, 24)  # declared by the ONNX graph's input
    assert inf.execute(solid_colour_png((25, 210, 40)))["prediction"] == "Dog"


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.process
def test_the_onnx_path_never_imports_tensorflow(exported_dir: Path):
    _run(
        "import sys; from kto.inference import Inference; "
        "from cats_dogs_other.testing.tiny_model import solid_colour_png; "
        f"inf = Inference({str(exported_dir)!r}); "
        "assert inf.execute(solid_colour_png((220, 30, 20)))['prediction'] == 'Cat'; "
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "assert not heavy, heavy"
    )


@pytest.mark.process
def test_the_onnx_path_opens_no_socket(exported_dir: Path):
    """Offline first: loading and running the model makes no network call (audit hook)."""
    _run(
        "import sys; events = []\n"
        "sys.addaudithook(lambda e, a: events.append(e) if e.startswith('socket.') else None)\n"
        "from kto.inference import Inference\n"
        "from cats_dogs_other.testing.tiny_model import solid_colour_png\n"
        f"Inference({str(exported_dir)!r}).execute(solid_colour_png((1, 2, 3)))\n"
        "assert not events, events\n"
    )


@pytest.mark.process
def test_a_keras_model_without_tensorflow_names_the_extra(keras_model_path: Path):
    """As in the serving install (no TensorFlow): the import fails, the message says what to do."""
    _run(
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from kto.inference import Inference, ModelLoadError\n"
        "try:\n"
        f"    Inference({str(keras_model_path)!r})\n"
        "except ModelLoadError as exc:\n"
        "    assert \"kto-keras-inference[keras]\" in str(exc) and '\\n' not in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('loaded a Keras model without Keras')\n"
    )
