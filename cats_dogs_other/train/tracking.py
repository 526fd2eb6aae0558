"""MLflow tracking: params, metrics, plots and the model directory, logged as-is under
``model``, so ``runs:/<id>/model`` or ``models:/cats-dogs-other/<n>`` downloads exactly what
``kto.inference`` loads (see ``cats_dogs_other/api/model_source.py``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.results import Metrics

log = logging.getLogger(__name__)
ARTIFACT_PATH = "model"


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    model_uri: str
    registered_name: str | None
    registered_version: str | None


def flat_metrics(metrics: Metrics) -> dict[str, float]:
    """The headline numbers of metrics.json as MLflow metrics; an empty figure is not logged."""
    test, cv, timing = metrics.test, metrics.cross_validation, metrics.timing
    out: dict[str, float | None] = {}
    for name, section in {"all": test.all, **test.per_source}.items():
        out[f"test_{name}_accuracy"] = section.accuracy.value
        for cls, values in section.per_class.items():
            out[f"test_{name}_precision_{cls}"] = values.precision
            out[f"test_{name}_recall_{cls}"] = values.recall
    out |= {f"test_other_rate_{kind}": p.value for kind, p in test.other_by_kind.items()}
    if cv:
        out |= {"cv_accuracy_mean": cv.accuracy_mean, "cv_accuracy_pooled": cv.pooled.value}
        out |= {f"cv_fold_{i}_accuracy": acc for i, acc in enumerate(cv.fold_accuracies, 1)}
    out["ood_other_rate"] = metrics.ood.all.value if metrics.ood else None
    if metrics.calibration:
        served = metrics.calibration["test_after"]
        out["calibrated_test_ece"] = served["ece"]
        out["calibrated_test_accuracy_at_95_coverage"] = served["accuracy_at_coverage"]
        out["calibrated_test_confident_mistake_share"] = served["confident_mistake_share"]
    out["timing_ms_single_image"] = timing.ms_single_image
    out["timing_ms_per_image_batch32"] = timing.ms_per_image_batch32
    out["timing_intra_op_threads"] = float(timing.intra_op_threads)
    return {k: v for k, v in out.items() if v is not None}


def log_run(cfg: TrainConfig, metrics: Metrics, model_dir: Path) -> TrackedRun:
    """The run in ``cfg.tracking_uri``; the model registered as ``cfg.register_name`` when the
    store has a registry (otherwise a warning says how to serve the run's model)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(str(cfg.tracking_uri))
    mlflow.set_experiment(cfg.experiment)
    name, version = cfg.register_name, cfg.version
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v) for k, v in cfg.params().items()})
        mlflow.log_metrics(flat_metrics(metrics))
        sources = ",".join(s.name for s in metrics.dataset.sources)
        tags = {"model_version": version, "sources": sources, "backbone": cfg.backbone}
        mlflow.set_tags(tags | {"input_size": str(metrics.model.input_size)})
        for png in sorted(model_dir.glob("*.png")):
            mlflow.log_artifact(str(png), artifact_path="plots")
        mlflow.log_artifacts(str(model_dir), artifact_path=ARTIFACT_PATH)
        source = f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"
    model_uri, registered = f"runs:/{run.info.run_id}/{ARTIFACT_PATH}", None
    if name:
        try:  # a store without a registry refuses these calls
            client, about = mlflow.MlflowClient(), "cats / dogs / other image classifier"
            try:
                client.create_registered_model(name, description=about)
            except MlflowException as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                    raise
            tag = {"model_version": version}
            mv = client.create_model_version(name, source, run.info.run_id, tags=tag)
            registered = str(mv.version)
        except MlflowException as exc:
            log.warning("model not registered (%s); serve it with MODEL_URI=%s", exc, model_uri)
            name = None
    return TrackedRun(run.info.run_id, model_uri, name, registered)
