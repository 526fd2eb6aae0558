"""The whole pipeline, end to end, on generated data with the ``tiny`` backbone (no weights).

One training run (module fixture) through the real CLI; the model directory it writes is then
loaded through the wheel, exactly as the API loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cats_dogs_other.train.cli import main
from cats_dogs_other.train.dataset import load_dataset
from cats_dogs_other.train.pipeline import OUTPUT_FILES, run_training
from cats_dogs_other.train.train import TrainConfig

from .conftest import COLOURS, write_ecotag, write_folders

TINY = ["--backbone", "tiny", "--input-size", "32", "--quiet", "--epochs", "40"]
TINY += ["--learning-rate", "0.01", "--aug-passes", "1", "--patience", "40"]


def write_ood(root: Path) -> Path:
    """Greyscale, white and black-and-white patterned images: no cat colour, no dog colour."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(8):
        grey = np.full((40, 40, 3), 60 + 20 * i, np.uint8)
        Image.fromarray(grey).save(root / f"objects__gen__grey{i}.png")
        checker = (np.indices((40, 40)).sum(axis=0) // (2 + i) % 2 * 255).astype(np.uint8)
        noisy = np.clip(checker[..., None] + rng.normal(0, 10, (40, 40, 3)), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(root / f"drawings__gen__check{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    data = write_ecotag(root / "data", per_class=12)
    ood = write_ood(root / "ood")
    out = root / "model"
    argv = ["--data", str(data), "--out", str(out), "--cv-folds", "3", "--ood-dir", str(ood)]
    assert main([*argv, *TINY]) == 0
    return out


def test_writes_the_model_directory(trained: Path) -> None:
    for name in OUTPUT_FILES:
        assert (trained / name).stat().st_size > 0, name
    for png in ("confusion_matrix.png", "training_curves.png"):
        with Image.open(trained / png) as img:
            assert img.format == "PNG" and img.width > 300


def test_metadata_is_what_the_wheel_reads(trained: Path) -> None:
    meta = json.loads((trained / "metadata.json").read_text())
    assert meta["format"] == "kto-keras-inference/1"
    assert meta["classes"] == ["Cat", "Dog", "Other"]
    assert meta["input_size"] == [32, 32]
    assert meta["resize"] == "bilinear"
    assert meta["preprocessing"] == {"mode": "none"}  # rescaling is inside the model
    assert meta["decision"] is None or meta["decision"]["fallback"] == "Other"
    gate = meta["novelty_gate"]  # informative: the gate itself is inside model.keras
    assert gate is None or gate["reference_vectors"] == 30 * 2  # clean + 1 augmented pass


def test_metrics_report_what_the_issue_asks(trained: Path, tmp_path: Path) -> None:
    m = json.loads((trained / "metrics.json").read_text())
    assert m["split"]["sizes"] == {"train": 30, "val": 3, "test": 3}
    assert m["test"]["accuracy"] == 1.0
    assert set(m["test"]["per_class"]) == {"Cat", "Dog", "Other"}
    assert {"precision", "recall", "f1", "support"} <= set(m["test"]["per_class"]["Dog"])
    assert np.asarray(m["test"]["confusion_matrix"]["matrix"]).trace() == 3
    cv = m["cross_validation"]
    assert cv["folds"] == 3 and len(cv["fold_accuracies"]) == 3
    assert cv["accuracy_mean"] == pytest.approx(np.mean(cv["fold_accuracies"]), abs=1e-3)
    # the dataset hash is the one the loader computes for that data
    again = load_dataset(trained.parent / "data", (8, 8), progress=False)
    assert m["dataset"]["sha256"] == again.sha256
    assert m["serving_check"]["max_abs_probability_diff"] < 1e-4
    assert m["test_classifier_alone"]["n"] == 3
    assert m["timing"]["ms_single_image"] > 0
    ood = m["ood"]
    assert ood["all"]["n"] == 16 and ood["held_out"]["n"] + ood["calibration"]["n"] == 16
    assert m["model"]["decision"] == json.loads((trained / "metadata.json").read_text())["decision"]


def test_model_card_carries_the_figures(trained: Path) -> None:
    card = (trained / "MODEL_CARD.md").read_text()
    m = json.loads((trained / "metrics.json").read_text())
    assert f"{m['test']['accuracy']:.1%}" in card
    assert "## Reproduce" in card and "python -m cats_dogs_other.train --data" in card
    assert "## Out-of-distribution images" in card and "held-out half" in card
    assert "## Limits" in card and "## Intended use" in card


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
        assert len(result["values"]) == 3 and sum(result["values"]) == pytest.approx(1, abs=1e-4)


def test_class_folders_and_fine_tuning(tmp_path: Path) -> None:
    data = write_folders(tmp_path / "data", per_class=10)
    cfg = TrainConfig(
        data=data,
        out=tmp_path / "model",
        backbone="tiny",
        input_size=32,
        epochs=30,
        learning_rate=0.01,
        aug_passes=1,
        cv_folds=0,
        fine_tune_layers=1,
        fine_tune_epochs=2,
        fine_tune_learning_rate=1e-3,
        progress=False,
    )
    result = run_training(cfg)
    m = result.metrics
    assert m["dataset"]["format"] == "folders"
    assert m["training"]["epochs_run"]["fine-tuning"] == 2
    assert m["cross_validation"] is None and m["ood"] is None
    assert m["test"]["accuracy"] == 1.0
    assert (result.out / "model.keras").is_file()


def test_cli_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--data",
        "--weights",
        "--out",
        "--input-size",
        "--seed",
        "--epochs",
        "--fine-tune-layers",
        "--val",
        "--test",
        "--ood-dir",
        "--tracking-uri",
    ):
        assert flag in text, flag


def test_cli_reports_missing_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_ecotag(tmp_path / "data", per_class=4)
    code = main(
        [
            "--data",
            str(data),
            "--weights",
            str(tmp_path / "nope.weights.h5"),
            "--out",
            str(tmp_path / "m"),
            "--quiet",
            "--no-ood",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "backbone weights not found" in err and "nope.weights.h5" in err
    assert not (tmp_path / "m").exists()


def test_cli_reports_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_ecotag(tmp_path / "data", per_class=4)
    (data / "extract" / "dog_02.png").unlink()
    code = main(["--data", str(data), "--out", str(tmp_path / "m"), *TINY, "--no-ood"])
    assert code == 2
    assert "missing" in capsys.readouterr().err


def test_cv_command_prints_each_fold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_folders(tmp_path / "data", per_class=6)
    report = tmp_path / "cv.json"
    argv = ["cv", "--data", str(data), "--folds", "3", "--json", str(report), *TINY]
    assert main([*argv, "--epochs", "8"]) == 0
    out = capsys.readouterr().out
    assert "3-fold CV accuracy" in out
    figures = json.loads(report.read_text())
    assert figures[0]["input_size"] == 32 and len(figures[0]["fold_accuracies"]) == 3


def test_the_folder_is_served_by_its_verified_onnx_export(trained: Path) -> None:
    from kto.inference import Inference

    exported = json.loads((trained / "metadata.json").read_text())["exported"]
    check = exported["verification"]
    assert check["argmax_agreement"] == 1.0 and check["max_abs_probability_diff"] <= 1e-4
    assert check["images"] > 0 and check["source"] == "held-out test+val files"
    inference = Inference(trained, warmup=False)
    assert inference.backend == "onnx" and inference.sha256 == exported["sha256"]
    assert "## Served runtime (ONNX export)" in (trained / "MODEL_CARD.md").read_text()
