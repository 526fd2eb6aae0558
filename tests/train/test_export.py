"""The ONNX export step: verified against the Keras model, recorded, refused when it differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from kto.inference import Inference
from kto.inference.model import file_sha256

from cats_dogs_other.testing.tiny_model import save_tiny_model, solid_colour_png
from cats_dogs_other.train.cli import main
from cats_dogs_other.train.export import CARD_HEADING, HELD_OUT, ExportError, export_model
from cats_dogs_other.train.reporting.heldout import rebuild_held_out

from .conftest import PipelineRun, make_images

COLOURS = [(220, 30, 20), (25, 210, 40), (30, 20, 230), (90, 90, 90)]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = save_tiny_model(tmp_path / "model").parent
    (folder / "MODEL_CARD.md").write_text("# tiny\n\n## Reproduce\nsomething\n")
    return folder


def test_export_writes_a_verified_model_the_api_serves(model_dir: Path) -> None:
    images = [solid_colour_png(c) for c in COLOURS]
    record = export_model(model_dir, images, source="four colours")
    check = record["verification"]
    assert check["images"] == 4 and check["source"] == "four colours"
    assert check["max_abs_probability_diff"] <= 1e-4 and check["argmax_agreement"] == 1.0
    assert json.loads((model_dir / "metadata.json").read_text())["exported"] == record
    served = Inference(model_dir, warmup=False)
    assert served.backend == "onnx" and served.sha256 == record["sha256"]
    assert served.execute(images[1])["prediction"] == "Dog"
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".export-")]
    card = (model_dir / "MODEL_CARD.md").read_text()
    keras_sha256 = file_sha256(model_dir / "model.keras")
    assert f"| `model.onnx` | served | `{served.sha256}` |" in card
    assert f"| `model.keras` | trained, exported from | `{keras_sha256}` |" in card


def test_the_card_section_is_replaced_not_repeated(model_dir: Path) -> None:
    images = [solid_colour_png(c) for c in COLOURS]
    export_model(model_dir, images, source="first")
    export_model(model_dir, images, source="second")
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert card.count(CARD_HEADING) == 1 and "(second)" in card and "(first)" not in card
    assert card.startswith("# tiny\n\n## Reproduce\nsomething\n")


def test_an_export_beyond_the_tolerance_is_refused_and_nothing_is_written(model_dir: Path) -> None:
    before = (model_dir / "metadata.json").read_text()
    with pytest.raises(ExportError, match=r"disagrees with the Keras model .*nothing was written"):
        export_model(model_dir, [solid_colour_png((1, 2, 3))], source="one", tolerance=-1.0)
    assert not (model_dir / "model.onnx").exists()
    assert (model_dir / "metadata.json").read_text() == before
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "MODEL_CARD.md",
        "metadata.json",
        "model.keras",
    ]


def _copy(run: PipelineRun, to: Path) -> tuple[Path, list[str]]:
    """A copy of the session's trained folder and the --data arguments of its sources."""
    return shutil.copytree(run.out, to), [a for s in run.sources for a in ("--data", str(s))]


def _verification(model: Path) -> dict[str, Any]:
    check: dict[str, Any] = json.loads((model / "metadata.json").read_text())["exported"]
    return check["verification"]


def test_the_export_command_verifies_on_the_files_training_held_out(
    pipeline_run: PipelineRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = _copy(pipeline_run, tmp_path / "model")
    at_training = _verification(model)
    (model / "model.onnx").unlink()
    assert main(["export", "--model", str(model), *data]) == 0
    check = _verification(model)
    assert check["source"] == at_training["source"] == HELD_OUT
    assert check["images"] == at_training["images"] > 0  # the same test + validation files
    assert f"on {check['images']} images" in capsys.readouterr().out


def test_sources_that_no_longer_give_the_split_are_refused_naming_the_flag(
    pipeline_run: PipelineRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = _copy(pipeline_run, tmp_path / "model")
    before = (model / "metadata.json").read_text()
    assert main(["export", "--model", str(model), *data[:2]]) == 2  # one of the two sources
    err = capsys.readouterr().err
    assert "no longer give the test split" in err and "pass the --data folders" in err
    assert (model / "metadata.json").read_text() == before


def test_same_named_files_in_other_folders_are_not_taken_for_the_held_out_ones(
    pipeline_run: PipelineRun, tmp_path: Path
) -> None:
    """Beside copies of the sources, an undecodable file with the name of every image of both
    sources, in a folder the Ecotag export does not list: only the exact files are verified on."""
    model, _ = _copy(pipeline_run, tmp_path / "model")
    sources = [shutil.copytree(s, tmp_path / "data" / s.name) for s in pipeline_run.sources]
    names = {f.name for s in sources for f in s.rglob("*") if f.suffix in (".png", ".jpg")}
    (sources[0] / "older").mkdir()
    for name in names:
        (sources[0] / "older" / name).write_bytes(b"no image")
    (model / "model.onnx").unlink()
    data = [a for s in sources for a in ("--data", str(s))]
    assert main(["export", "--model", str(model), *data]) == 0
    assert _verification(model)["images"] == _verification(pipeline_run.out)["images"]
    held = rebuild_held_out(model, sources)
    assert all(
        p.is_relative_to(tmp_path / "data") and p.parent.name != "older"
        for _, p, _ in held.test + held.val
    )


def test_a_folder_without_metrics_json_is_verified_on_images_only(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    more = tmp_path / "more"
    make_images(more / "nested", per_class=2)
    (more / "notes.txt").write_text("not an image")
    assert main(["export", "--model", str(model_dir), "--data", str(more)]) == 2
    err = capsys.readouterr().err
    assert "has no metrics.json" in err and "verify on --images FOLDER instead" in err
    assert not (model_dir / "model.onnx").exists()
    assert main(["export", "--model", str(model_dir), "--images", str(more)]) == 0
    assert _verification(model_dir)["source"] == f"6 more from {more}"


def test_the_export_command_without_images_is_a_clear_error(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "no images to verify on: pass --data for each source" in err and "--images" in err
    assert not (model_dir / "model.onnx").exists()


def test_images_already_held_out_are_not_verified_twice(
    pipeline_run: PipelineRun, tmp_path: Path
) -> None:
    model, data = _copy(pipeline_run, tmp_path / "model")
    imagenet = pipeline_run.sources[1]
    assert main(["export", "--model", str(model), *data, "--images", str(imagenet)]) == 0
    held = rebuild_held_out(model, list(pipeline_run.sources))
    files = {p.resolve() for p in imagenet.rglob("*") if p.suffix in (".png", ".jpg")}
    rows = {p.resolve() for _, p, _ in held.test + held.val}
    check = _verification(model)
    assert check["images"] == len(rows) + len(files - rows) and files - rows and files & rows
    assert check["source"] == f"{HELD_OUT} + {len(files - rows)} more from {imagenet}"
