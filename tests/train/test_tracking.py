"""MLflow round trip against a real local store (sqlite): train with tracking, then serve the
logged model through ``model_source`` + the wheel, by run URI and by registry URI.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cats_dogs_other.api.model_source import resolve_model_uri
from cats_dogs_other.train.cli import main
from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.reporting.champion import resolve_champion
from cats_dogs_other.train.results import ClassFigures, HeldOutReport, Metrics, Section, Timing
from cats_dogs_other.train.stats import Proportion, proportion
from cats_dogs_other.train.tracking import flat_metrics

from .conftest import TINY, write_ecotag

# MLflow's sqlite store trips a SQLAlchemy deprecation warning that is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A sqlite tracking store whose experiment keeps artifacts in the test's temp folder."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_experiment("cats-dogs-other", artifact_location=(root / "artifacts").as_uri())
    return uri, root


@pytest.fixture(scope="module")
def tracked_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tracked run's data (``data``) and model folder (``model``) are."""
    return tmp_path_factory.mktemp("tracked")


@pytest.fixture(scope="module")
def tracked_run(store: tuple[str, Path], tracked_root: Path) -> Any:
    import mlflow

    uri, _ = store
    root = tracked_root
    data = write_ecotag(root / "data", per_class=8)
    argv = ["--data", str(data), "--out", str(root / "model"), "--cv-folds", "0", "--no-ood"]
    argv += ["--model-version", "9.9.9"]
    assert main([*argv, "--tracking-uri", uri, *TINY]) == 0
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("cats-dogs-other")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def _red(tmp_path: Path) -> Path:
    pixels = np.clip(
        np.asarray([210, 30, 30]) + np.random.default_rng(1).normal(0, 15, (40, 40, 3)), 0, 255
    )
    path = tmp_path / "red.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_run_logs_params_metrics_plots_and_model(tracked_run: Any) -> None:
    client, run = tracked_run
    assert run.data.params["backbone"] == "tiny"
    assert run.data.params["input_size"] == "32"
    assert run.data.metrics["test_all_accuracy"] == 1.0
    assert "test_data_recall_Cat" in run.data.metrics
    assert run.data.tags["model_version"] == "9.9.9" == run.data.params["version"]
    assert run.data.tags["sources"] == "data"
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert top == {"model", "plots"}
    model_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model.keras", "model.onnx", "metadata.json", "MODEL_CARD.md"} <= model_files
    versions = client.search_model_versions("name='cats-dogs-other'")
    assert [v.run_id for v in versions] == [run.info.run_id]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["runs", "models"])
def test_logged_model_is_served_through_the_wheel(
    kind: str,
    tracked_run: Any,
    store: tuple[str, Path],
    tmp_path: Path,
) -> None:
    from kto.inference import Inference

    _, run = tracked_run
    uri = f"runs:/{run.info.run_id}/model" if kind == "runs" else "models:/cats-dogs-other/1"
    folder = resolve_model_uri(uri, tmp_path / "cache", tracking_uri=store[0])
    assert (folder / "metadata.json").is_file()
    inference = Inference(folder, warmup=False)
    assert inference.backend == "onnx"  # the export travels with the model: no TF to serve it
    assert inference.execute(_red(tmp_path))["prediction"] == "Cat"


def test_flat_metrics_names_the_headline_figures(bundled_metrics: Metrics) -> None:
    def section(acc: float) -> Section:
        figures = ClassFigures(1, 0.9, 0.95, 1, proportion(1, 1), proportion(1, 1))
        return replace(
            bundled_metrics.test.all,
            accuracy=Proportion(acc, 1, 1, [0.2, 1.0]),
            per_class={"Cat": figures},
        )

    assert bundled_metrics.cross_validation is not None and bundled_metrics.ood is not None
    metrics = replace(
        bundled_metrics,
        test=HeldOutReport(
            all=section(0.95),
            per_source={"pets": section(0.9)},
            other_by_kind={"food": Proportion(0.8, 4, 5, [0.4, 0.96])},
            other_held_out_classes=proportion(4, 5),
        ),
        cross_validation=replace(
            bundled_metrics.cross_validation,
            accuracy_mean=0.98,
            pooled=Proportion(0.985, 197, 200, [0.95, 0.99]),
            fold_accuracies=[0.97, 0.99],
        ),
        ood=replace(bundled_metrics.ood, all=Proportion(0.6, 3, 5, [0.2, 0.9])),
        timing=Timing(12.5, 3.25, 2, "text is skipped"),
        calibration=None,
    )
    flat = flat_metrics(metrics)
    assert flat == {
        "test_all_accuracy": 0.95,
        "test_all_precision_Cat": 1,
        "test_all_recall_Cat": 0.9,
        "test_pets_accuracy": 0.9,
        "test_pets_precision_Cat": 1,
        "test_pets_recall_Cat": 0.9,
        "test_other_rate_food": 0.8,
        "cv_accuracy_mean": 0.98,
        "cv_accuracy_pooled": 0.985,
        "cv_fold_1_accuracy": 0.97,
        "cv_fold_2_accuracy": 0.99,
        "ood_other_rate": 0.6,
        "timing_ms_single_image": 12.5,
        "timing_ms_per_image_batch32": 3.25,
        "timing_intra_op_threads": 2,
    }


def test_flat_metrics_carry_the_calibration_figures(bundled_metrics: Metrics) -> None:
    assert bundled_metrics.calibration is not None
    served = bundled_metrics.calibration["test_after"]
    flat = flat_metrics(bundled_metrics)
    assert flat["calibrated_test_ece"] == served["ece"]
    assert flat["calibrated_test_confident_mistake_share"] == served["confident_mistake_share"]


@pytest.mark.slow
def test_the_gate_logs_its_table_and_promotes_by_alias_when_asked(
    tracked_run: Any, tracked_root: Path, store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, run = tracked_run
    uri, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (version,) = client.search_model_versions("name='cats-dogs-other'")
    model = tracked_root / "model"
    argv = ["gate", "--model", str(model), "--champion", str(model)]
    argv += ["--data", str(tracked_root / "data"), "--run-id", run.info.run_id]
    assert main(argv) == 0  # the gate alone: no alias
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias("cats-dogs-other", "champion")
    assert main([*argv, "--set-alias", f"cats-dogs-other/{version.version}"]) == 0
    assert (
        client.get_model_version_by_alias("cats-dogs-other", "champion").version == version.version
    )
    registry = ["--champion", "models:/cats-dogs-other@champion"]  # the one in service
    assert main(["gate", "--model", str(model), *registry, *argv[5:]]) == 0
    logged = client.get_run(run.info.run_id)
    assert logged.data.metrics["champion_gate_passed"] == 1.0
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"champion_gate.md", "champion_gate.json"} <= names


def test_a_registry_champion_that_does_not_exist_is_a_clear_error(
    store: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrainingError, match="cannot fetch the champion models:/absent@champion"):
        resolve_champion("models:/absent@champion", tmp_path)
    assert not any(tmp_path.iterdir())
