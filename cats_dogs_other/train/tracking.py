"""MLflow tracking (the course's platform): params, metrics, plots and the model directory.

The model directory is logged as-is under the artifact path ``model`` (model.keras +
metadata.json + card + plots), so ``runs:/<id>/model`` or ``models:/cats-dogs-other/<n>``
downloads exactly what ``kto.inference`` loads: see ``cats_dogs_other/api/model_source.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ARTIFACT_PATH = "model"


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    model_uri: str
    registered_name: str | None
    registered_version: str | None


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of metrics.json as MLflow metrics."""
    out: dict[str, float] = {}
    for split in ("test", "test_classifier_alone", "val"):
        section = metrics.get(split) or {}
        if section.get("accuracy") is not None:
            out[f"{split}_accuracy"] = section["accuracy"]
        for cls, values in (section.get("per_class") or {}).items():
            if split == "test":
                for key in ("precision", "recall", "f1"):
                    out[f"test_{key}_{cls}"] = values[key]
    cv = metrics.get("cross_validation") or {}
    if cv:
        out["cv_accuracy_mean"] = cv["accuracy_mean"]
        out["cv_accuracy_std"] = cv["accuracy_std"]
        for i, acc in enumerate(cv["fold_accuracies"]):
            out[f"cv_fold_{i + 1}_accuracy"] = acc
    ood = (metrics.get("ood") or {}).get("held_out") or {}
    for key in ("other_rate_without_rule", "other_rate_with_rule"):
        if ood.get(key) is not None:
            out[f"ood_held_out_{key}"] = ood[key]
    for key, value in (metrics.get("timing") or {}).items():
        if isinstance(value, int | float):
            out[f"timing_{key}"] = float(value)
    return out


def log_run(
    *,
    tracking_uri: str,
    experiment: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    model_dir: Path,
    register_name: str | None,
) -> TrackedRun:
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_metrics(flat_metrics(metrics))
        mlflow.set_tags(
            {
                "dataset_sha256": metrics["dataset"]["sha256"],
                "backbone": str(params.get("backbone")),
                "input_size": str(metrics["model"]["input_size"]),
            }
        )
        for png in sorted(model_dir.glob("*.png")):
            mlflow.log_artifact(str(png), artifact_path="plots")
        mlflow.log_artifacts(str(model_dir), artifact_path=ARTIFACT_PATH)
        run_id = run.info.run_id
        artifact_uri = f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"
    model_uri = f"runs:/{run_id}/{ARTIFACT_PATH}"
    version = None
    if register_name:
        try:
            version = _register(register_name, artifact_uri, run_id)
        except MlflowException as exc:
            log.warning("model not registered (%s); serve it with MODEL_URI=%s", exc, model_uri)
            register_name = None
    return TrackedRun(run_id, model_uri, register_name, version)


def _register(name: str, source: str, run_id: str) -> str:
    """A new version of ``name`` whose source is the run's model directory."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.create_registered_model(name, description="cats / dogs / other image classifier")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    mv = client.create_model_version(name, source=source, run_id=run_id)
    return str(mv.version)
