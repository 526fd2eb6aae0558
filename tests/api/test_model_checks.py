"""What the API does with a model that misbehaves or an unusual model folder: start-up errors
in one short line naming the file and ``MODEL_PATH``, a NaN answer as a counted 500, and a
folder holding only ``model.onnx`` served."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.startup import MAX_SENTENCE, StartupError, check_model_file
from cats_dogs_other.testing.images import png
from tests.api.support import override_principal

_HUGE = np.float32(3e38)  # two of them add up to infinity in float32


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cats_dogs_other.testing.tiny_model import save_tiny_model

    root = tmp_path_factory.mktemp("odd-models")
    overflow = (np.eye(3) * _HUGE, np.full(3, _HUGE))  # blank: finite; red: inf - inf = NaN
    return {
        "overflow": save_tiny_model(root / "overflow", input_size=(32, 32), dense=overflow).parent,
        "nan": save_tiny_model(
            root / "nan", input_size=(32, 32), dense=(np.eye(3), np.full(3, np.inf))
        ).parent,
    }


def _start(settings: Settings, issuer: Any) -> StartupError:
    app = create_app(settings, transport=issuer.transport)
    with pytest.raises(StartupError) as caught, TestClient(app):
        pass
    return caught.value


def _one_short_line(error: StartupError, *names: str) -> str:
    sentence = error.sentence
    assert "\n" not in sentence and len(sentence) <= MAX_SENTENCE, len(sentence)
    for name in names:
        assert name in sentence, sentence
    return sentence


def test_deeply_nested_metadata_is_one_line_naming_the_file(tiny_model: Path, tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(StartupError) as caught:
        check_model_file(folder, "MODEL_PATH")
    sentence = _one_short_line(caught.value, "MODEL_PATH", "metadata.json", "nested too deeply")
    assert "RecursionError" not in sentence


def test_metadata_numbers_that_overflow_the_model_are_refused(tiny_model: Path, tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["preprocessing"] = {"mode": "scale", "scale": 1 / 127.5, "offset": 1e308}
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(StartupError) as caught:
        check_model_file(folder, "MODEL_PATH")
    _one_short_line(caught.value, "MODEL_PATH", "preprocessing.offset")


def test_a_hundred_thousand_class_names_make_one_short_line(
    tiny_model: Path, tmp_path: Path, make_settings: Callable[..., Settings], module_issuer: Any
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["classes"] = [f"class{i}" for i in range(100_000)]
    (folder / "metadata.json").write_text(json.dumps(meta))
    check_model_file(folder, "MODEL_PATH")  # valid on its own; the model has 3 outputs
    error = _start(make_settings(model_path=folder), module_issuer)
    _one_short_line(error, "MODEL_PATH", "100,000 classes", "unset it to serve the bundled model")


def test_warmup_refuses_a_model_answering_nan(
    keras_models: dict[str, Path], make_settings: Callable[..., Settings], module_issuer: Any
):
    error = _start(make_settings(model_path=keras_models["nan"]), module_issuer)
    _one_short_line(error, "MODEL_PATH", "NaN or infinity")


def test_a_nan_answer_is_a_counted_500_never_a_class(
    keras_models: dict[str, Path],
    make_settings: Callable[..., Settings],
    module_issuer: Any,
    images: dict[str, bytes],
):
    app = create_app(
        make_settings(model_path=keras_models["overflow"]), transport=module_issuer.transport
    )
    override_principal(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        dark = client.post("/upload", files={"file": ("d.png", png((20, 20, 20)), "image/png")})
        red = client.post("/upload", files={"file": ("r.png", images["red"], "image/png")})
        batch = client.post(
            "/upload/batch",
            files=[
                ("file", ("b.png", images["blue"], "image/png")),
                ("file", ("r.png", images["red"], "image/png")),
            ],
        )
    assert dark.status_code == 200, dark.text  # a finite answer is served as usual
    for response in (red, batch):
        assert response.status_code == 500
        assert response.json()["code"] == "model_output_invalid"
        assert "prediction" not in response.text
    rendered = app.state.metrics.render().decode()
    assert "cats_dogs_other_model_output_invalid_total 2.0" in rendered


def test_a_folder_with_only_model_onnx_starts_and_serves(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    module_issuer: Any,
    images: dict[str, bytes],
):
    from cats_dogs_other.testing.tiny_model import save_tiny_model

    exported = save_tiny_model(
        tmp_path / "full", input_size=(32, 32), with_metadata=False, onnx=True
    )
    folder = tmp_path / "onnx-only"
    folder.mkdir()
    shutil.copy(exported.parent / "model.onnx", folder / "model.onnx")
    check_model_file(folder, "MODEL_PATH")  # boot.py's pre-flight
    app = create_app(make_settings(model_path=folder), transport=module_issuer.transport)
    override_principal(app)
    with TestClient(app) as client:
        response = client.post("/upload", files={"file": ("r.png", images["red"], "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == "Cat"
