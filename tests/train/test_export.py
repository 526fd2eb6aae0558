"""The ONNX export step: verified against the Keras model, recorded, refused when it differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kto.inference import Inference
from kto.inference.model import file_sha256

from cats_dogs_other.testing.tiny_model import save_tiny_model, solid_colour_png
from cats_dogs_other.train.cli import main
from cats_dogs_other.train.export import CARD_HEADING, ExportError, export_model

from .conftest import make_images

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


def test_the_export_command_verifies_on_the_held_out_files(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    names = make_images(data / "extract", per_class=2)
    held = [names["cat"][0], names["other"][1]]
    (model_dir / "metrics.json").write_text(json.dumps({"split": {"test_files": held}}))
    assert main(["export", "--model", str(model_dir), "--data", str(data)]) == 0
    check = json.loads((model_dir / "metadata.json").read_text())["exported"]["verification"]
    assert check["images"] == 2 and "2 held-out files" in check["source"]
    assert "argmax agreement 100.0% on 2 images" in capsys.readouterr().out


def test_the_export_command_without_images_is_a_clear_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--model", str(model_dir), "--data", str(tmp_path / "none")]) == 2
    assert "no images to verify on" in capsys.readouterr().err
    assert not (model_dir / "model.onnx").exists()


def test_the_export_command_adds_the_images_of_images_folders(
    model_dir: Path, tmp_path: Path
) -> None:
    data, more = tmp_path / "data", tmp_path / "more"
    names = make_images(data, per_class=1)
    make_images(more / "nested", per_class=2)
    (more / "notes.txt").write_text("not an image")
    (model_dir / "metrics.json").write_text(json.dumps({"split": {"test_files": names["cat"]}}))
    argv = ["export", "--model", str(model_dir), "--data", str(data), "--images", str(more)]
    assert main(argv) == 0
    check = json.loads((model_dir / "metadata.json").read_text())["exported"]["verification"]
    assert check["images"] == 1 + 5  # more/nested/cat_00.png is taken as the held-out file
    assert check["source"] == f"the 1 held-out files metrics.json lists + 5 more from {more}"
