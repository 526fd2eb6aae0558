"""``precision="auto"`` (the default): a folder's model.int8.onnx on ONNX Runtime when it has
one, float32 everywhere else; ``f32`` and ``int8`` pin one. The course contract
``Inference(path).execute(image)`` answers on every kind of folder.

The int8 file here is a copy of the tiny model's model.onnx under the int8 name: the choice
is made from the files, and a copy tells which one was loaded. The real quantized tiny model
is checked in tests/train/test_quantize.py (quantization lives in the training package).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kto.inference import Inference, ModelLoadError
from kto.inference.model import (
    INT8_FILENAME,
    ONNX_FILENAME,
    resolve_model,
    resolve_precision,
)
from kto.inference.testing import solid_colour_png


@pytest.fixture(scope="module")
def with_int8(exported_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.keras, model.onnx and a model.int8.onnx beside them."""
    folder = tmp_path_factory.mktemp("with-int8") / "m"
    shutil.copytree(exported_dir, folder)
    shutil.copy(folder / ONNX_FILENAME, folder / INT8_FILENAME)
    return folder


@pytest.mark.parametrize(
    ("backend", "precision", "want"),
    [
        ("auto", "auto", ("int8", "onnx", INT8_FILENAME)),
        ("onnx", "auto", ("int8", "onnx", INT8_FILENAME)),
        ("openvino", "auto", ("f32", "openvino", ONNX_FILENAME)),
        ("keras", "auto", ("f32", "keras", "model.keras")),
        ("auto", "f32", ("f32", "onnx", ONNX_FILENAME)),
        ("auto", "int8", ("int8", "onnx", INT8_FILENAME)),
        ("openvino", "int8", ("int8", "openvino", INT8_FILENAME)),
    ],
)
def test_auto_picks_int8_only_for_a_folder_with_the_file_on_onnx_runtime(
    with_int8: Path, backend: str, precision: str, want: tuple[str, str, str]
) -> None:
    chosen = resolve_precision(with_int8, backend, precision)  # type: ignore[arg-type]
    runtime, file = resolve_model(with_int8, backend, precision)  # type: ignore[arg-type]
    assert (chosen, runtime, file.name) == want


def test_auto_is_f32_without_the_int8_file_and_for_a_file_named_alone(
    exported_dir: Path, with_int8: Path
) -> None:
    assert resolve_precision(exported_dir) == "f32"
    assert resolve_model(exported_dir) == ("onnx", exported_dir / ONNX_FILENAME)
    assert resolve_precision(with_int8 / ONNX_FILENAME) == "f32"
    assert resolve_precision(with_int8 / "model.keras") == "f32"
    assert resolve_precision(with_int8 / INT8_FILENAME) == "int8"  # the int8 file itself


def test_an_unknown_precision_is_refused(exported_dir: Path) -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision(exported_dir, "auto", "fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision must be one of"):
        Inference(exported_dir, precision="fp16", warmup=False)  # type: ignore[arg-type]


def test_explicit_int8_without_the_file_stays_a_clear_error(exported_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"has no {INT8_FILENAME}: quantize the model"):
        Inference(exported_dir, precision="int8", warmup=False)


@pytest.mark.parametrize(
    ("folder", "precision", "file"),
    [
        ("with_int8", "int8", INT8_FILENAME),
        ("exported_dir", "f32", ONNX_FILENAME),
        ("keras_model_path", "f32", "model.keras"),
        ("legacy_h5_path", "f32", "model.h5"),
    ],
)
def test_the_course_contract_on_every_kind_of_folder(
    request: pytest.FixtureRequest, folder: str, precision: str, file: str
) -> None:
    path: Path = request.getfixturevalue(folder)
    inference = Inference(path.parent if path.is_file() else path)
    assert (inference.precision, inference.model_path.name) == (precision, file)
    answer = inference.execute(solid_colour_png((220, 20, 20), size=inference.input_size))
    assert answer["prediction"] == "Cat" and len(answer["values"]) == 3
    assert f"precision={precision!r}" in repr(inference)
