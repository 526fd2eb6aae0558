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
    test = metrics.get("test") or {}
    sections = {"all": test.get("all")} | (test.get("per_source") or {})
    for name, section in sections.items():
        if not section:
            continue
        if section["accuracy"]["value"] is not None:
            out[f"test_{name}_accuracy"] = section["accuracy"]["value"]
        for cls, values in section["per_class"].items():
            for key in ("precision", "recall"):
                out[f"test_{name}_{key}_{cls}"] = values[key]
    for kind, p in (test.get("other_by_kind") or {}).items():
        if p["value"] is not None:
            out[f"test_other_rate_{kind}"] = p["value"]
    cv = metrics.get("cross_validation") or {}
    if cv:
        out["cv_accuracy_mean"] = cv["accuracy_mean"]
        out["cv_accuracy_pooled"] = cv["pooled"]["value"]
        for i, acc in enumerate(cv["fold_accuracies"]):
            out[f"cv_fold_{i + 1}_accuracy"] = acc
    ood = (metrics.get("ood") or {}).get("all") or {}
    if ood.get("value") is not None:
        out["ood_other_rate"] = ood["value"]
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
    version: str,
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
                "model_version": version,
                "sources": ",".join(s["name"] for s in metrics["dataset"]["sources"]),
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
    registered = None
    if register_name:
        try:
            registered = _register(register_name, artifact_uri, run_id, version)
        except MlflowException as exc:
            log.warning("model not registered (%s); serve it with MODEL_URI=%s", exc, model_uri)
            register_name = None
    return TrackedRun(run_id, model_uri, register_name, registered)


def _register(name: str, source: str, run_id: str, version: str) -> str:
    """A new version of ``name`` whose source is the run's model directory."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.create_registered_model(name, description="cats / dogs / other image classifier")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    mv = client.create_model_version(
        name, source=source, run_id=run_id, tags={"model_version": version}
    )
    return str(mv.version)
