"""Model files that cannot be used fail with a ModelLoadError a person can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kto.inference import Inference, ModelLoadError

from cats_dogs_other.testing.tiny_model import save_tiny_model


def test_missing_file(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="model file not found"):
        Inference(tmp_path / "model.keras")


def test_directory_without_model(tmp_path: Path):
    with pytest.raises(ModelLoadError, match=r"no model\.keras or model\.h5"):
        Inference(tmp_path)


def test_unknown_extension(tmp_path: Path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unsupported model format"):
        Inference(tmp_path / "model.pt")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("model.keras", "cannot load Keras model"),
        ("model.h5", "cannot load Keras model"),
        ("model.onnx", "cannot load ONNX model"),
    ],
)
def test_corrupt_model_file(tmp_path: Path, name: str, message: str):
    (tmp_path / name).write_bytes(b"this is not a model")
    with pytest.raises(ModelLoadError, match=message):
        Inference(tmp_path / name)


def _rewrite_metadata(model: Path, **changes: object) -> None:
    path = model.parent / "metadata.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_metadata_with_more_classes_than_outputs(tmp_path: Path):
    model = save_tiny_model(tmp_path)
    _rewrite_metadata(model, classes=["Cat", "Dog", "Other", "Bird"])
    with pytest.raises(ModelLoadError, match=r"outputs 3 values but .* lists 4 classes"):
        Inference(model)


def test_metadata_input_size_differs_from_model(tmp_path: Path):
    model = save_tiny_model(tmp_path)
    _rewrite_metadata(model, input_size=[64, 64])
    with pytest.raises(ModelLoadError, match=r"input_size \[64, 64\] but the model expects"):
        Inference(model)


def test_metadata_that_is_not_json(tmp_path: Path):
    model = save_tiny_model(tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        Inference(model)


def test_int8_precision_resolves_the_int8_file_or_says_it_is_missing(tmp_path: Path):
    from kto.inference.model import INT8_FILENAME, resolve_model

    folder = save_tiny_model(tmp_path / "m", onnx=True).parent
    with pytest.raises(ModelLoadError, match=f"has no {INT8_FILENAME}"):
        resolve_model(folder, precision="int8")
    with pytest.raises(ModelLoadError, match="keras runs float32 only"):
        resolve_model(folder, "keras", precision="int8")
    with pytest.raises(ModelLoadError, match=r"needs a model folder or an \.onnx file"):
        resolve_model(folder / "model.keras", precision="int8")
    (folder / INT8_FILENAME).write_bytes((folder / "model.onnx").read_bytes())
    assert resolve_model(folder, precision="int8") == ("onnx", folder / INT8_FILENAME)
    # auto: float32 until metadata.json's int8 record makes the file the default
    assert resolve_model(folder) == ("onnx", folder / "model.onnx")
    assert resolve_model(folder, precision="f32") == ("onnx", folder / "model.onnx")
