"""``precision="auto"`` (the default): a folder's model.int8.onnx on ONNX Runtime when its
metadata.json ``int8`` record says it is the default and both hashes match, float32 everywhere
else, with the reason; ``f32`` and ``int8`` pin one (``int8`` refuses a file its record shows
stale). The course contract ``Inference(path).execute(image)`` answers on every kind of folder.

The int8 file here is a copy of the tiny model's model.onnx under the int8 name: the choice
is made from the files, and a copy tells which one was loaded. The real quantized tiny model
is checked in tests/train/test_quantize.py (quantization lives in the training package).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kto.inference import Inference, ModelLoadError, ModelMetadata, model
from kto.inference.model import (
    INT8_FILENAME,
    ONNX_FILENAME,
    FileDigests,
    decide_precision,
    file_sha256,
    resolve_model,
    resolve_precision,
)

from cats_dogs_other.testing.tiny_model import save_tiny_model, solid_colour_png


def write_int8_record(folder: Path, **changes: Any) -> dict[str, Any]:
    """metadata.json ``int8`` as ``train quantize`` writes it for the folder's files, the rule
    met, with ``changes`` applied; returns the record."""
    record = {
        "file": INT8_FILENAME,
        "sha256": file_sha256(folder / INT8_FILENAME),
        "source_sha256": file_sha256(folder / ONNX_FILENAME),
        "default": True,
        **changes,
    }
    meta = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**meta, "int8": record}))
    return record


def _copy_with_int8(source: Path, into: Path) -> Path:
    """model.keras, model.onnx and a model.int8.onnx beside them (a copy of model.onnx)."""
    shutil.copytree(source, into)
    shutil.copy(into / ONNX_FILENAME, into / INT8_FILENAME)
    return into


@pytest.fixture(scope="module")
def with_int8(exported_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose int8 record makes model.int8.onnx the default."""
    folder = _copy_with_int8(exported_dir, tmp_path_factory.mktemp("with-int8") / "m")
    write_int8_record(folder)
    return folder


@pytest.fixture
def unrecorded(exported_dir: Path, tmp_path: Path) -> Path:
    """model.int8.onnx beside model.onnx, and no int8 record yet."""
    return _copy_with_int8(exported_dir, tmp_path / "m")


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
def test_auto_picks_int8_only_for_a_recorded_default_on_onnx_runtime(
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


def test_the_int8_record_round_trips_through_the_metadata(with_int8: Path) -> None:
    meta = ModelMetadata.read(with_int8 / "metadata.json")
    assert meta.int8 is not None and meta.int8.default and meta.int8.file == INT8_FILENAME
    assert "int8" not in meta.extra
    assert ModelMetadata.from_dict(meta.to_dict()).int8 == meta.int8
    assert (
        ModelMetadata.from_dict({k: v for k, v in meta.to_dict().items() if k != "int8"}).int8
        is None
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"file": INT8_FILENAME, "sha256": "x", "source_sha256": "0" * 64, "default": True},
        {"file": INT8_FILENAME, "sha256": "0" * 64, "source_sha256": "0" * 64, "default": "yes"},
        {"file": "../model.onnx", "sha256": "0" * 64, "source_sha256": "0" * 64, "default": True},
        ["model.int8.onnx"],
    ],
)
def test_a_malformed_int8_record_is_one_clear_error(unrecorded: Path, bad: Any) -> None:
    meta = json.loads((unrecorded / "metadata.json").read_text())
    (unrecorded / "metadata.json").write_text(json.dumps({**meta, "int8": bad}))
    with pytest.raises(ModelLoadError, match="'int8' must be null or an object"):
        Inference(unrecorded, warmup=False)


def test_without_a_record_auto_serves_f32_and_int8_serves_the_file_unchecked(
    unrecorded: Path,
) -> None:
    auto = Inference(unrecorded, warmup=False)
    assert (auto.precision, auto.model_path.name) == ("f32", ONNX_FILENAME)
    assert auto.precision_reason == (
        f"{INT8_FILENAME} present but not served: metadata.json has no int8 record "
        "(python -m cats_dogs_other.train quantize)"
    )
    pinned = Inference(unrecorded, warmup=False, precision="int8")
    assert (pinned.precision, pinned.model_path.name) == ("int8", INT8_FILENAME)
    assert pinned.precision_reason.startswith("pinned (precision int8), unchecked: ")


def test_a_record_whose_rule_was_not_met_serves_f32_unless_int8_is_pinned(
    unrecorded: Path,
) -> None:
    write_int8_record(unrecorded, default=False)
    decision = decide_precision(unrecorded)
    assert decision.precision == "f32"
    assert decision.reason == f"{INT8_FILENAME} present but not the default: the rule was not met"
    assert resolve_model(unrecorded) == ("onnx", unrecorded / ONNX_FILENAME)
    pinned = Inference(unrecorded, warmup=False, precision="int8")
    assert (pinned.precision, pinned.model_path.name) == ("int8", INT8_FILENAME)
    assert pinned.precision_reason == "pinned (precision int8); the rule was not met"
    assert Inference(unrecorded, warmup=False).precision_reason == decision.reason


def test_an_int8_file_changed_since_its_record_is_not_served(unrecorded: Path) -> None:
    write_int8_record(unrecorded, sha256="0" * 64)
    want = f"{INT8_FILENAME} is not the file its record names (sha256 differs)"
    assert decide_precision(unrecorded).precision == "f32"
    assert decide_precision(unrecorded).reason.endswith(want)
    with pytest.raises(ModelLoadError, match=r"precision int8 refused: .*sha256 differs"):
        Inference(unrecorded, warmup=False, precision="int8")


def test_an_int8_file_built_from_another_model_onnx_is_not_served(
    unrecorded: Path, tmp_path: Path
) -> None:
    """model.onnx exported again (other weights) into a folder that keeps its model.int8.onnx
    and record: the record's source hash no longer matches."""
    write_int8_record(unrecorded)
    assert decide_precision(unrecorded).precision == "int8"
    other = np.eye(3, dtype=np.float32) * 2.0, np.zeros(3, np.float32)
    again = save_tiny_model(tmp_path / "again", onnx=True, dense=other).parent
    shutil.copy(again / ONNX_FILENAME, unrecorded / ONNX_FILENAME)
    decision = decide_precision(unrecorded)
    assert decision.precision == "f32"
    assert decision.reason == (
        f"{INT8_FILENAME} present but not served: {INT8_FILENAME} was built from another "
        f"{ONNX_FILENAME}"
    )
    inference = Inference(unrecorded, warmup=False)
    assert (inference.model_path.name, inference.sha256) == (
        ONNX_FILENAME,
        file_sha256(again / ONNX_FILENAME),
    )
    with pytest.raises(ModelLoadError, match=f"built from another {ONNX_FILENAME}; quantize"):
        Inference(unrecorded, warmup=False, precision="int8")


def test_a_record_about_another_file_does_not_vouch_for_model_int8(unrecorded: Path) -> None:
    write_int8_record(unrecorded, file="model.int8.rejected.onnx", default=False)
    decision = decide_precision(unrecorded)
    assert decision.precision == "f32" and "about model.int8.rejected.onnx" in decision.reason


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files hashed from now on (a spy: each is still read and hashed)."""
    names: list[str] = []
    hash_file = model._identified_sha256

    def spy(path: Path) -> tuple[tuple[int, ...], str]:
        names.append(path.name)
        return hash_file(path)

    monkeypatch.setattr(model, "_identified_sha256", spy)
    return names


@pytest.mark.parametrize("precision", ["auto", "int8"])
def test_a_load_hashes_each_model_file_once(
    unrecorded: Path, hashed: list[str], precision: Any
) -> None:
    """The precision check, the file choice and the served file's fingerprint share the
    load's FileDigests; a caller's digests (the API's) are used, not hashed again."""
    record = write_int8_record(unrecorded)
    hashed.clear()
    inference = Inference(unrecorded, warmup=False, precision=precision)
    assert sorted(hashed) == [INT8_FILENAME, ONNX_FILENAME]
    assert inference.sha256 == record["sha256"]
    digests = FileDigests()
    assert resolve_model(unrecorded, precision=precision, digests=digests)[1].name == INT8_FILENAME
    again = Inference(unrecorded, warmup=False, precision=precision, digests=digests)
    assert again.digests is digests and again.sha256 == inference.sha256
    assert sorted(hashed) == [INT8_FILENAME, INT8_FILENAME, ONNX_FILENAME, ONNX_FILENAME]


def test_file_digests_hash_a_file_again_once_it_changes(tmp_path: Path, hashed: list[str]) -> None:
    """Written in place (another size) or replaced by a rename (another inode): hashed again."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"first")
    digests = FileDigests()
    assert digests.sha256(path) == digests.sha256(path) == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"second, longer")
    assert digests.sha256(path) == hashlib.sha256(b"second, longer").hexdigest()
    (tmp_path / "new").write_bytes(b"third, longer!")
    (tmp_path / "new").replace(path)
    third = hashlib.sha256(b"third, longer!").hexdigest()
    assert digests.sha256(path) == digests.sha256(path) == third
    assert hashed == ["model.onnx"] * 3
