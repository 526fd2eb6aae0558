"""Probes, the model endpoint and the OpenAPI document (Swagger's Authorize button)."""

from __future__ import annotations

import hashlib
import shutil
import sys
import types
from pathlib import Path

import pytest
from kto.inference import ModelLoadError

from cats_dogs_other.api.startup import StartupError
from cats_dogs_other.testing.images import png
from cats_dogs_other.testing.issuer import AUDIENCE, ISSUER, SCOPE
from tests.api.support import bearer, running_app


def test_health_is_ok(client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "OK", "state_store": "in-process"}


def test_ready_once_model_and_keys_are_there(client) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_model_describes_the_loaded_file(client, module_issuer, tiny_model) -> None:
    response = client.get("/model", headers=bearer(module_issuer.token()))
    assert response.json() == {
        "name": "tiny-colour-model",
        "version": "0.0.1",
        "classes": ["Cat", "Dog", "Other"],
        "input_size": [32, 32],
        "sha256": sha256(tiny_model / "model.onnx"),
        "file": "model.onnx",
        "precision": "f32",
        "precision_reason": "no model.int8.onnx in the folder",
        "backend": "onnx",
        "files": {
            "model.onnx": sha256(tiny_model / "model.onnx"),
            "model.keras": sha256(tiny_model / "model.keras"),
        },
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("backend", "file"),
    [("auto", "model.onnx"), ("openvino", "model.onnx"), ("keras", "model.keras")],
)
def test_both_backends_serve_the_same_answers(
    make_settings, module_issuer, tiny_model, backend, file
) -> None:
    """INFERENCE_BACKEND picks the runtime; the folder's export and its Keras model agree."""
    headers = bearer(module_issuer.token())
    with running_app(make_settings(inference_backend=backend), module_issuer) as client:
        info = client.get("/model", headers=headers).json()
        answers = [
            client.post("/upload", headers=headers, files={"file": ("x.png", png(c))}).json()
            for c in ((220, 20, 20), (20, 200, 30), (20, 30, 220))
        ]
    assert info["sha256"] == sha256(tiny_model / file)
    assert info["file"] == file
    assert info["files"] == {
        name: sha256(tiny_model / name) for name in ("model.onnx", "model.keras")
    }
    assert [a["prediction"] for a in answers] == ["Cat", "Dog", "Other"]
    assert all(max(a["values"]) > 0.95 for a in answers)


@pytest.mark.parametrize(
    ("precision", "file", "served"),
    [(None, "model.int8.onnx", "int8"), ("int8", "model.int8.onnx", "int8"),
     ("f32", "model.onnx", "f32")],
)  # fmt: skip
def test_int8_is_served_by_default_and_f32_when_pinned(
    make_settings, module_issuer, tiny_int8_model, precision, file, served
) -> None:
    """INFERENCE_PRECISION unset (auto) or int8 serves the folder's model.int8.onnx with the
    same answers; f32 pins model.onnx. /model and /metrics say which file and precision."""
    headers = bearer(module_issuer.token())
    pinned = {} if precision is None else {"inference_precision": precision}
    settings = make_settings(model_path=tiny_int8_model, **pinned)
    with running_app(settings, module_issuer) as client:
        info = client.get("/model", headers=headers).json()
        answers = [
            client.post("/upload", headers=headers, files={"file": ("x.png", png(c))}).json()
            for c in ((220, 20, 20), (20, 200, 30), (20, 30, 220))
        ]
        text = client.get("/metrics").text
    assert (info["file"], info["precision"], info["backend"]) == (file, served, "onnx")
    assert info["sha256"] == sha256(tiny_int8_model / file)
    assert list(info["files"]) == [
        file,
        *(n for n in ("model.int8.onnx", "model.onnx", "model.keras") if n != file),
    ]
    assert f'cats_dogs_other_model_info{{backend="onnx",file="{file}",name=' in text
    assert f'precision="{served}",sha256="{info["sha256"]}"' in text
    assert [a["prediction"] for a in answers] == ["Cat", "Dog", "Other"]


def test_a_model_file_served_alone_is_listed_alone(
    make_settings, module_issuer, tiny_model, tmp_path
) -> None:
    """A file outside a model folder's names: nothing beside it is taken for its source."""
    alone = tmp_path / "classifier.onnx"
    shutil.copy(tiny_model / "model.onnx", alone)
    shutil.copy(tiny_model / "metadata.json", tmp_path / "metadata.json")
    (tmp_path / "model.keras").write_bytes(b"not this model's source")
    with running_app(make_settings(model_path=alone), module_issuer) as client:
        info = client.get("/model", headers=bearer(module_issuer.token())).json()
    assert info["file"] == "classifier.onnx"
    assert info["files"] == {"classifier.onnx": sha256(alone)} and info["sha256"] == sha256(alone)


def test_a_model_file_replaced_in_place_is_hashed_again(
    make_settings, module_issuer, tiny_model, tmp_path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    headers = bearer(module_issuer.token())
    with running_app(make_settings(model_path=folder), module_issuer) as client:
        before = client.get("/model", headers=headers).json()["files"]["model.keras"]
        (folder / "model.keras").write_bytes(b"a different file of another size")
        after = client.get("/model", headers=headers).json()["files"]["model.keras"]
    assert before == sha256(tiny_model / "model.keras")
    assert after == sha256(folder / "model.keras") != before


def test_start_up_and_model_read_each_model_file_once(
    make_settings, module_issuer, tiny_int8_model, monkeypatch
) -> None:
    """The int8 check, the file choice, the served file's fingerprint and /model all hash
    through one FileDigests: each model file is read once per start (spied, not replaced)."""
    from kto.inference import model

    read: list[str] = []
    hash_file = model._identified_sha256

    def spy(path: Path) -> tuple[tuple[int, ...], str]:
        read.append(path.name)
        return hash_file(path)

    monkeypatch.setattr(model, "_identified_sha256", spy)
    headers = bearer(module_issuer.token())
    with running_app(make_settings(model_path=tiny_int8_model), module_issuer) as client:
        assert sorted(read) == ["model.int8.onnx", "model.onnx"]
        infos = [client.get("/model", headers=headers).json() for _ in range(2)]
    assert sorted(read) == ["model.int8.onnx", "model.keras", "model.onnx"]
    assert infos[0] == infos[1]
    assert infos[0]["files"] == {
        name: sha256(tiny_int8_model / name)
        for name in ("model.int8.onnx", "model.onnx", "model.keras")
    }


def test_model_requires_a_token(client) -> None:
    assert client.get("/model").status_code == 401


def test_openapi_declares_the_client_credentials_flow(client) -> None:
    document = client.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["auth0"]
    assert scheme["type"] == "oauth2"
    flow = scheme["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == f"{ISSUER}oauth/token"
    assert SCOPE in flow["scopes"]
    for path in ("/upload", "/upload/batch", "/model"):
        operation = next(iter(document["paths"][path].values()))
        assert operation["security"] == [{"auth0": [SCOPE]}]
    assert "security" not in document["paths"]["/health"]["get"]
    upload = document["paths"]["/upload"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"


def test_openapi_declares_the_served_models_classes(client) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Prediction"]
    props = schema["properties"]
    assert props["prediction"]["enum"] == ["Cat", "Dog", "Other"]
    assert props["values"]["minItems"] == props["values"]["maxItems"] == 3
    assert sorted(props["probabilities"]["properties"]) == ["Cat", "Dog", "Other"]
    assert props["probabilities"]["additionalProperties"] is False
    assert set(schema["required"]) >= {"prediction", "values", "probabilities"}


def test_openapi_enum_follows_the_model_being_served(
    make_settings, module_issuer, tmp_path
) -> None:
    import json

    from cats_dogs_other.testing.tiny_model import save_tiny_model

    model = save_tiny_model(tmp_path / "fr")
    meta_path = model.parent / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["classes"] = ["Chat", "Chien", "Autre"]
    meta_path.write_text(json.dumps(meta))
    with running_app(make_settings(model_path=model), module_issuer) as client:
        document = client.get("/openapi.json").json()
        props = document["components"]["schemas"]["Prediction"]["properties"]
        assert props["prediction"]["enum"] == ["Chat", "Chien", "Autre"]
        assert sorted(props["probabilities"]["required"]) == ["Autre", "Chat", "Chien"]


def test_swagger_ui_asks_for_the_audience(client) -> None:
    page = client.get("/docs").text
    assert "initOAuth" in page
    assert AUDIENCE in page
    assert client.get("/redoc").status_code == 200


def test_metrics_count_auth_failures_by_reason(client) -> None:
    client.get("/model", headers={"Authorization": "Bearer not.a.jwt"})
    text = client.get("/metrics").text
    assert 'cats_dogs_other_auth_failures_total{reason="malformed"}' in text
    assert (
        'cats_dogs_other_model_info{backend="onnx",file="model.onnx",name="tiny-colour-model"'
        in text
    )


def test_model_uri_is_resolved_through_model_source(
    make_settings, module_issuer, tiny_model, tmp_path, monkeypatch
) -> None:
    """With MODEL_URI set, the lifespan asks model_source for a local file and loads that."""

    calls = []

    def resolve_model_uri(uri, cache_dir):
        calls.append((uri, cache_dir))
        return tiny_model

    fake = types.ModuleType("cats_dogs_other.api.model_source")
    fake.resolve_model_uri = resolve_model_uri  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cats_dogs_other.api.model_source", fake)
    settings = make_settings(
        model_uri="models:/cats-dogs-other/1",
        model_path=tmp_path / "absent.keras",
        model_cache_dir=tmp_path / "cache",
    )
    with running_app(settings, module_issuer) as client:
        assert client.get("/model", headers=bearer(module_issuer.token())).status_code == 200
    assert calls == [("models:/cats-dogs-other/1", tmp_path / "cache")]


def test_a_missing_model_stops_start_up_with_the_wheel_error(
    make_settings, module_issuer, tmp_path
) -> None:
    settings = make_settings(model_path=tmp_path / "missing.keras")
    with (
        pytest.raises(
            StartupError, match=r"^MODEL_PATH: .*missing\.keras.*; point MODEL_PATH at"
        ) as caught,
        running_app(settings, module_issuer),
    ):
        pass
    assert isinstance(caught.value.__cause__, ModelLoadError)


@pytest.mark.parametrize(("backend", "threads"), [("onnx", 1), ("openvino", 2), ("keras", 1)])
def test_openvinos_one_stream_is_one_lane_with_every_lanes_threads(
    make_settings, backend, threads
) -> None:
    """ONNX Runtime runs each lane's batch on that lane's intra-op threads; OpenVINO's single
    stream serves the lanes in turn, so it gets all of them."""
    from cats_dogs_other.api.app import _lanes, _runtime_threads

    settings = make_settings(inference_lanes=2, inference_threads=1)
    assert _runtime_threads(backend, settings) == threads
    assert _lanes(backend, settings) == (1 if backend == "openvino" else 2)
    assert _runtime_threads(backend, make_settings(inference_threads=0)) == 0  # runtime's own
