"""Model files that cannot be used fail with a ModelLoadError a person can act on."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from kto.inference import Inference, ModelLoadError
from kto.inference.model import input_size_of, output_width_of, resolve_model

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


def test_an_unknown_backend_is_a_value_error(tmp_path: Path):
    with pytest.raises(ValueError, match="backend must be one of 'auto'"):
        resolve_model(tmp_path, backend="tensorrt")  # type: ignore[arg-type]


def test_an_onnx_backend_needs_the_folders_exported_model(tmp_path: Path):
    (tmp_path / "model.keras").write_bytes(b"PK")
    assert resolve_model(tmp_path) == ("keras", tmp_path / "model.keras")
    with pytest.raises(ModelLoadError, match=r"no model\.onnx in directory"):
        resolve_model(tmp_path, backend="onnx")


def test_each_file_is_run_by_a_backend_that_reads_it(tmp_path: Path):
    onnx, keras = tmp_path / "exported.onnx", tmp_path / "trained.keras"
    onnx.write_bytes(b"\x08\x07")
    keras.write_bytes(b"PK")
    assert resolve_model(onnx, backend="onnx") == ("onnx", onnx)
    with pytest.raises(ModelLoadError, match="is an ONNX model; the keras backend needs"):
        resolve_model(onnx, backend="keras")
    with pytest.raises(ModelLoadError, match="is a Keras model; the onnx backend needs"):
        resolve_model(keras, backend="onnx")


def shapes(inputs: list[tuple], outputs: list[tuple]) -> SimpleNamespace:
    """What input_size_of and output_width_of read of a model: its tensors' shapes."""
    return SimpleNamespace(
        inputs=[SimpleNamespace(shape=s) for s in inputs],
        outputs=[SimpleNamespace(shape=s) for s in outputs],
    )


def test_a_model_of_any_input_size_declares_none():
    model = shapes([(None, None, None, 3)], [(None, None)])
    assert input_size_of(model) is None and output_width_of(model) is None
    assert input_size_of(shapes([(None, 224, 160, 3)], [])) == (224, 160)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (shapes([(None, 32, 32, 1)], [(None, 3)]), r"input must be \(batch, height, width, 3\)"),
        (shapes([(None, 32, 3)], [(None, 3)]), r"input must be \(batch, height, width, 3\)"),
        (shapes([], [(None, 3)]), "exactly one input"),
        (shapes([(None, 32, 32, 3)] * 2, [(None, 3)]), "exactly one input"),
    ],
    ids=["grey", "rank-3", "no-input", "two-inputs"],
)
def test_inputs_a_classifier_cannot_take_are_refused(model: SimpleNamespace, message: str):
    with pytest.raises(ModelLoadError, match=message):
        input_size_of(model)


def test_outputs_that_are_not_class_scores_are_refused():
    with pytest.raises(ModelLoadError, match=r"output must be \(batch, classes\)"):
        output_width_of(shapes([], [(None, 7, 7, 3)]))
    with pytest.raises(ModelLoadError, match="exactly one output"):
        output_width_of(shapes([], []))
    assert output_width_of(shapes([], [(None, 3)])) == 3
