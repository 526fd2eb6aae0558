"""The real data (../shared, skipped when absent) and the committed default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cats_dogs_other.train import paths
from cats_dogs_other.train.pipeline import OUTPUT_FILES, run_training
from cats_dogs_other.train.train import TrainConfig

DEFAULT_MODEL = paths.REPO_ROOT / "cats_dogs_other" / "model"


@pytest.mark.slow
def test_training_on_the_shared_data_reaches_the_bar(
    shared_data: tuple[Path, Path], tmp_path: Path
) -> None:
    """A quick version of the real recipe (160 px, one augmented pass, no CV, no OOD)."""
    data, weights = shared_data
    cfg = TrainConfig(
        data=data,
        out=tmp_path / "model",
        weights=weights,
        input_size=160,
        aug_passes=1,
        epochs=40,
        cv_folds=0,
        progress=False,
    )
    m = run_training(cfg).metrics
    assert m["dataset"]["images_used"] == 192 and m["dataset"]["skipped_count"] == 0
    assert m["split"]["sizes"] == {"train": 152, "val": 20, "test": 20}
    assert m["test"]["accuracy"] >= 0.9, m["test"]


def test_the_default_model_is_complete_and_small() -> None:
    for name in OUTPUT_FILES:
        assert (DEFAULT_MODEL / name).is_file(), f"{name} missing from {DEFAULT_MODEL}"
    assert (DEFAULT_MODEL / "model.keras").stat().st_size <= 15 * 1024 * 1024
    meta = json.loads((DEFAULT_MODEL / "metadata.json").read_text())
    assert meta["classes"] == ["Cat", "Dog", "Other"]
    assert meta["preprocessing"] == {"mode": "none"}
    metrics = json.loads((DEFAULT_MODEL / "metrics.json").read_text())
    assert metrics["cross_validation"]["accuracy_mean"] >= 0.98
    assert metrics["model"]["decision"] == meta["decision"]


@pytest.mark.slow
def test_the_default_model_scores_its_test_split_as_its_card_says(
    shared_data: tuple[Path, Path],
) -> None:
    """Reload the committed model through the wheel and re-score the held-out test files."""
    from kto.inference import Inference

    data, _ = shared_data
    metrics = json.loads((DEFAULT_MODEL / "metrics.json").read_text())
    if metrics["dataset"]["name"] != data.name:
        pytest.skip("the committed model was trained on other data")
    annotations = json.loads(next(data.glob("*.json")).read_text())["annotations"]
    truth = {a["fileName"]: a["annotation"]["label"].capitalize() for a in annotations}
    files = metrics["split"]["test_files"]
    inference = Inference(DEFAULT_MODEL / "model.keras", warmup=False)
    answers = inference.execute_batch([data / "extract" / f for f in files])
    correct = sum(a["prediction"] == truth[f] for a, f in zip(answers, files, strict=True))
    assert correct / len(files) == pytest.approx(metrics["test"]["accuracy"], abs=1e-3)
