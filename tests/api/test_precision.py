"""The bundled model folder is served in int8 by default (its model.int8.onnx passed the
champion/challenger gate and the committed bench run's 1.4x rule, as metadata.json ``int8``
records); a folder whose rule was not met is served in f32 and /model says why;
INFERENCE_PRECISION=f32 pins model.onnx, whose answers stay within 1e-4 of a plain ONNX
Runtime float32 session."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from kto.inference import Inference

from cats_dogs_other.api.settings import DEFAULT_MODEL_PATH
from tests.api.support import bearer, running_app
from tests.conftest import record_int8

PHOTOS = [Path(__file__).parents[2] / "bruno" / "fixtures" / n for n in ("cat.png", "dog.png")]
TOLERANCE = 1e-4

needs_bundled_int8 = pytest.mark.skipif(
    not (DEFAULT_MODEL_PATH / "model.int8.onnx").is_file(), reason="no bundled model.int8.onnx"
)


def _serve(make_settings, module_issuer, **overrides) -> tuple[dict, list[dict]]:
    settings = make_settings(model_path=DEFAULT_MODEL_PATH, batch_max_size=2, **overrides)
    headers = bearer(module_issuer.token())
    with running_app(settings, module_issuer) as client:
        info = client.get("/model", headers=headers).json()
        answers = [
            client.post("/upload", headers=headers, files={"file": (p.name, p.read_bytes())})
            for p in PHOTOS
        ]
    assert all(a.status_code == 200 for a in answers)
    return info, [a.json() for a in answers]


@needs_bundled_int8
def test_the_bundled_folder_is_served_in_int8_by_default(make_settings, module_issuer) -> None:
    info, answers = _serve(make_settings, module_issuer)
    record = json.loads((DEFAULT_MODEL_PATH / "metrics.json").read_text())["int8"]
    assert record["champion_gate"]["passed"] and record["default"]
    decision = json.loads((DEFAULT_MODEL_PATH / "metadata.json").read_text())["int8"]
    assert decision == {
        "file": "model.int8.onnx",
        "sha256": record["sha256"],
        "source_sha256": info["files"]["model.onnx"],
        "default": True,
    }
    assert (info["file"], info["precision"], info["backend"]) == ("model.int8.onnx", "int8", "onnx")
    assert info["precision_reason"] == "the int8 record says it met the rule (metadata.json)"
    assert info["sha256"] == info["files"]["model.int8.onnx"] == record["sha256"]
    assert [a["prediction"] for a in answers] == ["Cat", "Dog"]
    int8 = Inference(DEFAULT_MODEL_PATH, precision="int8", warmup=False)
    for answer, photo in zip(answers, PHOTOS, strict=True):
        np.testing.assert_allclose(answer["values"], int8.execute(photo)["values"], atol=1e-6)


@needs_bundled_int8
def test_f32_pinned_answers_as_onnx_runtime_float32(make_settings, module_issuer) -> None:
    import onnxruntime as ort

    info, answers = _serve(make_settings, module_issuer, inference_precision="f32")
    assert (info["file"], info["precision"]) == ("model.onnx", "f32")
    plain = Inference(DEFAULT_MODEL_PATH, precision="f32", warmup=False)
    session = ort.InferenceSession(
        str(DEFAULT_MODEL_PATH / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    prep, calibration = plain.metadata.preprocessing, plain.metadata.calibration
    assert calibration is not None
    for answer, photo in zip(answers, PHOTOS, strict=True):
        pixels = prep.apply(plain.preprocess(photo)[np.newaxis]).astype(np.float32)
        raw = session.run(None, {name: pixels})[0][0]
        want = calibration.apply(raw.astype(np.float64), plain.classes)
        np.testing.assert_allclose(answer["values"], want, atol=TOLERANCE)


@pytest.mark.parametrize(
    ("precision", "line"), [(None, "model.int8.onnx (int8"), ("f32", "model.onnx (f32")]
)
def test_the_start_up_line_names_the_file_precision_and_hash(
    make_settings, module_issuer, tiny_int8_model, caplog, precision, line
) -> None:
    caplog.set_level(logging.INFO, logger="cats_dogs_other.api.app")
    pinned = {} if precision is None else {"inference_precision": precision}
    with running_app(make_settings(model_path=tiny_int8_model, **pinned), module_issuer):
        pass
    file = line.split()[0]
    digest = hashlib.sha256((tiny_int8_model / file).read_bytes()).hexdigest()[:12]
    served = [r.getMessage() for r in caplog.records if "serving model" in r.getMessage()]
    reason = "pinned (precision f32)" if precision else "the int8 record says it met the rule"
    assert len(served) == 1 and served[0].startswith(
        f"serving model tiny-colour-model 0.0.1 from {line} on onnx, sha256 {digest}): {reason}"
    )


@pytest.mark.parametrize(
    ("passed", "ratio", "reason"),
    [
        (True, 1.2, "model.int8.onnx present but not the default: the rule was not met"),
        (True, None, "model.int8.onnx present but not the default: the rule was not met"),
        (False, 1.82, "model.int8.onnx present but not the default: the rule was not met"),
    ],
)
def test_a_folder_whose_rule_was_not_met_is_served_in_f32_and_says_why(
    make_settings, module_issuer, tiny_int8_model, tmp_path, caplog, passed, ratio, reason
) -> None:
    folder = shutil.copytree(tiny_int8_model, tmp_path / "m")
    assert record_int8(folder, passed=passed, ratio=ratio) is False
    caplog.set_level(logging.INFO, logger="cats_dogs_other.api.app")
    headers = bearer(module_issuer.token())
    with running_app(make_settings(model_path=folder), module_issuer) as client:
        info = client.get("/model", headers=headers).json()
    assert (info["file"], info["precision"], info["precision_reason"]) == (
        "model.onnx",
        "f32",
        reason,
    )
    assert any(r.getMessage().endswith(f"): {reason}") for r in caplog.records)
    with running_app(
        make_settings(model_path=folder, inference_precision="int8"), module_issuer
    ) as client:
        info = client.get("/model", headers=headers).json()
    assert (info["file"], info["precision"]) == ("model.int8.onnx", "int8")
    assert info["precision_reason"] == "pinned (precision int8); the rule was not met"


def test_an_int8_file_from_another_model_onnx_is_served_in_f32_or_refused(
    make_settings, module_issuer, tiny_int8_model, tmp_path
) -> None:
    """model.onnx replaced (exported again) under a model.int8.onnx built from the old one."""
    import onnx

    from cats_dogs_other.api.startup import StartupError

    folder = shutil.copytree(tiny_int8_model, tmp_path / "m")
    exported = onnx.load(str(folder / "model.onnx"))
    exported.doc_string = "exported again"  # the same graph, another file
    onnx.save(exported, str(folder / "model.onnx"))
    headers = bearer(module_issuer.token())
    with running_app(make_settings(model_path=folder), module_issuer) as client:
        info = client.get("/model", headers=headers).json()
    assert (info["file"], info["precision"]) == ("model.onnx", "f32")
    assert info["precision_reason"].endswith("model.int8.onnx was built from another model.onnx")
    pinned = make_settings(model_path=folder, inference_precision="int8")
    refused = pytest.raises(StartupError, match="INFERENCE_PRECISION: precision int8 refused")
    with refused, running_app(pinned, module_issuer):
        pass
