"""MODEL_URI resolution against real MLflow stores: a sqlite store with local artifacts, and a
real ``mlflow server`` on loopback (no mock)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cats_dogs_other.api.model_source import ModelSourceError, parse_model_uri, resolve_model_uri
from cats_dogs_other.loopback import LOOPBACK, Child, free_port

NAME = "cats-dogs-other"
# MLflow's sqlite store trips a SQLAlchemy deprecation warning that is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two runs: one logs a real (tiny) model directory, registered as version 1 with the alias
    'champion'; the other logs a directory without a model."""
    import mlflow

    from cats_dogs_other.testing.tiny_model import save_tiny_model

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("serving", artifact_location=(root / "artifacts").as_uri())
    model_dir = save_tiny_model(root / "tiny", input_size=(32, 32), onnx=True).parent
    keras_only = save_tiny_model(root / "keras-only", input_size=(32, 32)).parent

    good = client.create_run(exp)
    client.log_artifacts(good.info.run_id, str(model_dir), artifact_path="model")
    client.set_terminated(good.info.run_id)
    client.create_registered_model(NAME)
    source = f"{good.info.artifact_uri}/model"
    client.create_model_version(NAME, source=source, run_id=good.info.run_id)
    client.set_registered_model_alias(NAME, "champion", "1")

    empty = client.create_run(exp)
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("no model here")
    client.log_artifacts(empty.info.run_id, str(root / "notes"), artifact_path="model")

    legacy = client.create_run(exp)
    client.log_artifacts(legacy.info.run_id, str(keras_only), artifact_path="model")
    return {
        "uri": uri,
        "good": good.info.run_id,
        "empty": empty.info.run_id,
        "keras_only": legacy.info.run_id,
    }


def _classify_red(model: Path) -> tuple[str, str]:
    from kto.inference import Inference

    from cats_dogs_other.testing.tiny_model import solid_colour_png

    inference = Inference(model, warmup=False)
    return inference.backend, inference.execute(solid_colour_png((220, 20, 20)))["prediction"]


@pytest.mark.parametrize(
    "uri",
    [f"models:/{NAME}/1", f"models:/{NAME}@champion", "runs:/{good}/model"],
)
def test_resolves_to_a_model_the_wheel_serves(
    uri: str, registry: dict[str, str], tmp_path: Path
) -> None:
    path = resolve_model_uri(uri.format(**registry), tmp_path, tracking_uri=registry["uri"])
    assert path.is_dir() and path.is_relative_to(tmp_path)
    assert {"model.onnx", "model.keras", "metadata.json"} <= {p.name for p in path.iterdir()}
    assert _classify_red(path) == ("onnx", "Cat")  # the exported model, served without TF


def test_immutable_uris_are_reused_from_the_cache_without_the_server(
    registry: dict[str, str], tmp_path: Path
) -> None:
    first = resolve_model_uri(f"models:/{NAME}/1", tmp_path, tracking_uri=registry["uri"])
    down = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    again = resolve_model_uri(f"models:/{NAME}/1", tmp_path, tracking_uri=down)
    assert again == first


def test_alias_resolves_to_its_version_in_the_cache(
    registry: dict[str, str], tmp_path: Path
) -> None:
    path = resolve_model_uri(f"models:/{NAME}@champion", tmp_path, tracking_uri=registry["uri"])
    assert path == tmp_path / "models" / NAME / "1"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://bucket/model.keras", "not a supported MLflow URI"),
        (f"models:/{NAME}", "not a supported MLflow URI"),
        (f"models:/{NAME}/Production", "must be a number"),
        ("runs:/abc/../../etc", "must not contain '..'"),
    ],
)
def test_malformed_uris_are_explained(uri: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=message):
        resolve_model_uri(uri, tmp_path)


@pytest.mark.parametrize(
    "uri", [f"models:/{NAME}/7", f"models:/{NAME}@nobody", "models:/no-such-model/1"]
)
def test_unknown_models_are_explained(uri: str, registry: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="does not exist on the MLflow tracking server"):
        resolve_model_uri(uri, tmp_path, tracking_uri=registry["uri"])
    assert not any(tmp_path.rglob("model.*"))


def test_unknown_run_is_explained(registry: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="runs:/0123456789abcdef/model"):
        resolve_model_uri("runs:/0123456789abcdef/model", tmp_path, tracking_uri=registry["uri"])


def test_a_run_without_a_model_file_is_explained(registry: dict[str, str], tmp_path: Path) -> None:
    uri = f"runs:/{registry['empty']}/model"
    with pytest.raises(ModelSourceError, match=r"holds no model.onnx, model.keras .*README.txt"):
        resolve_model_uri(uri, tmp_path, tracking_uri=registry["uri"])


def test_a_keras_only_model_is_served_by_keras_where_tensorflow_is_installed(
    registry: dict[str, str], tmp_path: Path
) -> None:
    uri = f"runs:/{registry['keras_only']}/model"
    path = resolve_model_uri(uri, tmp_path, tracking_uri=registry["uri"])
    assert _classify_red(path) == ("keras", "Cat")


def test_an_unreachable_server_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    down = f"http://{LOOPBACK}:{free_port()}"
    with pytest.raises(ModelSourceError, match=f"tracking server {down}"):
        resolve_model_uri(f"models:/{NAME}/1", tmp_path, tracking_uri=down)


def test_parse_model_uri() -> None:
    assert parse_model_uri("models:/m/3").version == "3"
    assert parse_model_uri("models:/m@prod").alias == "prod"
    parsed = parse_model_uri("runs:/abc123/model")
    assert (parsed.kind, parsed.run_id, parsed.path) == ("runs", "abc123", "model")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on loopback, proxying artifacts (what a deployment runs)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", LOOPBACK]
    command += ["--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    server = Child(
        "mlflow server", command, env=os.environ, cwd=root, log_path=root / "server.log"
    ).start()
    url = f"http://{LOOPBACK}:{port}"
    try:
        server.wait_http(f"{url}/health", timeout_s=90, interval_s=0.3)
        yield url
    finally:
        server.stop(grace_s=30)


@pytest.mark.slow
def test_resolves_against_an_http_tracking_server(http_server: str, tmp_path: Path) -> None:
    """Artifacts go through the server (mlflow-artifacts:/): the API's production setup."""
    import mlflow

    from cats_dogs_other.testing.tiny_model import save_tiny_model

    client = mlflow.MlflowClient(tracking_uri=http_server)
    run = client.create_run(client.create_experiment("http"))
    model_dir = save_tiny_model(tmp_path / "tiny", input_size=(32, 32), onnx=True).parent
    client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    client.create_registered_model(NAME)
    client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias(NAME, "champion", "1")

    path = resolve_model_uri(
        f"models:/{NAME}@champion", tmp_path / "cache", tracking_uri=http_server
    )
    assert _classify_red(path) == ("onnx", "Cat")
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_model_uri(f"models:/{NAME}/2", tmp_path / "cache", tracking_uri=http_server)
