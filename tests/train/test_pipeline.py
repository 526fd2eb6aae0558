"""The whole pipeline, end to end, on generated data with the ``tiny`` backbone (no weights).

One training run (the session's ``trained`` fixture, see conftest.py) through the real CLI on two
sources of different layouts, fetched as archives through a dataset manifest; the model
directory it writes is then loaded through the wheel, exactly as the API loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cats_dogs_other.train.cli import main
from cats_dogs_other.train.reporting.outputs import OUTPUT_FILES
from cats_dogs_other.train.results import Metrics
from cats_dogs_other.train.versions import BUNDLED_MODEL, promote

from .conftest import COLOURS, TINY, write_ecotag


def metrics_of(model_dir: Path) -> dict:
    return json.loads((model_dir / "metrics.json").read_text())


def test_writes_the_model_directory(trained: Path) -> None:
    for name in OUTPUT_FILES:
        assert (trained / name).stat().st_size > 0, name
    for png in ("confusion_matrix.png", "training_curves.png"):
        with Image.open(trained / png) as img:
            assert img.format == "PNG" and img.width > 300


def test_metadata_is_what_the_wheel_reads(trained: Path) -> None:
    meta = json.loads((trained / "metadata.json").read_text())
    assert meta["format"] == "kto-keras-inference/1"
    assert meta["version"] == "3.1.4"
    assert meta["classes"] == ["Cat", "Dog", "Other"]
    assert meta["input_size"] == [32, 32]
    assert meta["preprocessing"] == {"mode": "none"}  # rescaling is inside the model
    assert set(meta["sources"]) == {"course", "imagenet"}


def test_the_top_block_is_fine_tuned_without_the_cross_validated_source(trained: Path) -> None:
    """Fine-tuning is on by default; the course set (cross-validated) never trains the block, and
    the saved model answers as the fine-tuned features said (the serving check passed)."""
    m = metrics_of(trained)
    tuning = m["fine_tuning"]
    assert tuning["first_layer"] == "tiny_conv2" and tuning["trained_on"] == ["imagenet"]
    assert tuning["images"] == 12 and tuning["views"] == ["clean", "flip"]
    assert tuning["kept"] == (tuning["val_loss_best"] < tuning["val_loss_frozen"])
    assert m["training"]["params"]["fine_tune"] is True
    card = (trained / "MODEL_CARD.md").read_text()
    assert ("top block: **on**" in card) == tuning["kept"]
    check = m["serving_check"]
    assert check["files"] == check["same_prediction"] and check["max_abs_probability_diff"] < 1e-4


def test_duplicates_are_removed_before_splitting(trained: Path) -> None:
    ds = metrics_of(trained)["dataset"]
    removed = {d["file"]: d for d in ds["duplicates"]}
    assert set(removed) == {"dog/n02099999_copy.png", "other/n04999999_big.jpg"}
    assert removed["dog/n02099999_copy.png"]["why"] == "byte-identical"
    assert removed["other/n04999999_big.jpg"]["why"].startswith("near-identical")
    assert removed["dog/n02099999_copy.png"]["same_as"] == "course/dog_03.png"
    assert ds["images_used"] == 36 + 20
    course, imagenet = ds["sources"]
    assert course["format"] == "ecotag" and imagenet["format"] == "folders"
    assert imagenet["per_class_used"] == {"Cat": 0, "Dog": 10, "Other": 10}


def test_split_holds_out_a_share_of_every_source_and_class(trained: Path) -> None:
    m = metrics_of(trained)
    per_source = m["split"]["per_source"]
    # 12 per class: 2 test, 1 calibration, 1 validation; 10 per class: 2, 1, 1
    assert per_source["course"] == {"train": 24, "val": 3, "calibration": 3, "test": 6}
    assert per_source["imagenet"] == {"train": 12, "val": 2, "calibration": 2, "test": 4}
    test_files = set(m["split"]["test_files"])
    held = m["split"]["held_out_imagenet_classes"]
    assert len(held) == 4
    assert all(
        any(f.startswith(f"imagenet/{x}/{c}") for f in test_files for x in ("dog", "other"))
        for c in held
    )


def test_every_figure_has_n_and_an_interval(trained: Path) -> None:
    m = metrics_of(trained)
    test = m["test"]
    assert test["all"]["accuracy"]["n"] == 10
    low, high = test["all"]["accuracy"]["ci95"]
    assert 0 <= low <= test["all"]["accuracy"]["value"] <= high <= 1
    assert set(test["per_source"]) == {"course", "imagenet"}
    course = test["per_source"]["course"]
    assert course["per_class"]["Dog"]["recall_ci"]["n"] == 2
    assert np.asarray(course["confusion_matrix"]["matrix"]).sum() == 6
    assert test["other_by_kind"] == {
        "objects": test["other_held_out_classes"]
    }  # n04... ids are objects
    cv = m["cross_validation"]
    assert cv["source"] == "course" and cv["folds"] == 3 and cv["pooled"]["n"] == 36
    assert m["serving_check"]["same_prediction"] == m["serving_check"]["files"] == 10
    assert m["serving_check"]["max_abs_probability_diff"] < 1e-4
    assert [c["chosen"] for c in m["selection"]["candidates"]].count(True) == 1


def test_model_card_carries_the_figures(trained: Path) -> None:
    card = (trained / "MODEL_CARD.md").read_text()
    m = Metrics.from_json(metrics_of(trained))
    assert m.cross_validation is not None
    assert "# Model card: cats-dogs-other 3.1.4" in card
    assert str(m.test.all.accuracy) in card
    assert str(m.cross_validation.pooled) in card
    for heading in ("## Targets", "## Data", "## Decisions", "### `course` (test split)"):
        assert heading in card, heading
    assert "by kind" in card and "## Reproduce" in card and "--manifest" in card


def test_the_wheel_loads_and_classifies_new_images(trained: Path, tmp_path: Path) -> None:
    from kto.inference import Inference

    inference = Inference(trained / "model.keras", warmup=False)
    assert inference.metadata.classes == ("Cat", "Dog", "Other")
    rng = np.random.default_rng(99)  # images the model never saw
    for label, rgb in COLOURS.items():
        pixels = np.clip(np.asarray(rgb) + rng.normal(0, 20, (50, 70, 3)), 0, 255)
        path = tmp_path / f"{label}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        result = inference.execute(path)
        assert result["prediction"] == label.capitalize(), result
        assert sum(result["values"]) == pytest.approx(1, abs=1e-4)


@pytest.mark.slow
def test_course_set_alone_with_mirror_pass_and_refit(tmp_path: Path) -> None:
    data = write_ecotag(tmp_path / "data", per_class=10)
    argv = ["--data", str(data), "--out", str(tmp_path / "m"), "--cv-folds", "0", "--no-ood"]
    tiny = [a for a in TINY if a != "--no-refit"]
    assert main([*argv, *tiny, "--hidden", "8", "--weighting", "none", "--tta", "on"]) == 0
    m = metrics_of(tmp_path / "m")
    assert m["model"]["mirror_test_time_augmentation"] is True
    assert m["training"]["refit_on"] == "train + val + calibration"
    assert m["test"]["all"]["accuracy"]["value"] == 1.0 and m["cross_validation"] is None
    assert m["serving_check"]["max_abs_probability_diff"] < 1e-4


def test_never_overwrites_a_model_folder(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (trained / "model.keras").read_bytes()
    data = trained.parent  # any folder: the refusal comes before reading data
    for out in (trained, BUNDLED_MODEL):
        code = main(["--data", str(data), "--out", str(out), *TINY])
        assert code == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "make promote" in err
    assert (trained / "model.keras").read_bytes() == before


def test_promote_swaps_a_trained_folder_in(trained: Path, tmp_path: Path) -> None:
    from kto.inference import Inference

    target = tmp_path / "bundled"
    target.mkdir()
    (target / "model.keras").write_bytes(b"old")
    assert main(["promote", str(trained), "--to", str(target)]) == 0
    assert Inference(target / "model.keras", warmup=False).metadata.version == "3.1.4"
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in trained.iterdir())
    assert not list(tmp_path.glob(".*"))  # no staging or old copy left behind
    assert target.stat().st_mode & 0o777 == 0o755  # readable by the service's own user
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.keras").write_bytes(b"x")
    with pytest.raises(Exception, match="not a complete model folder"):
        promote(tmp_path / "half", target)


def test_the_folder_is_served_by_its_verified_onnx_export(trained: Path) -> None:
    from kto.inference import Inference

    exported = json.loads((trained / "metadata.json").read_text())["exported"]
    check = exported["verification"]
    assert check["argmax_agreement"] == 1.0 and check["max_abs_probability_diff"] <= 1e-4
    assert check["images"] > 0 and check["source"] == "held-out test+val files"
    inference = Inference(trained, warmup=False)
    assert inference.backend == "onnx" and inference.sha256 == exported["sha256"]
    assert "## Served runtime (ONNX export)" in (trained / "MODEL_CARD.md").read_text()
