"""metadata.json parsing and validation (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kto.inference import ModelLoadError, ModelMetadata
from kto.inference.metadata import Decision, Preprocessing

DOC: dict[str, Any] = {
    "format": "kto-keras-inference/1",
    "name": "cats-dogs-other",
    "version": "1.0.0",
    "classes": ["Cat", "Dog", "Other"],
    "input_size": [160, 160],
    "resize": "bilinear",
    "preprocessing": {"mode": "scale", "scale": 0.00784313725, "offset": -1.0},
    "decision": {"rule": "min_confidence", "threshold": 0.8, "fallback": "Other"},
}


def test_contract_example_round_trips(tmp_path: Path):
    meta = ModelMetadata.from_dict({**DOC, "metrics": {"accuracy": 0.9}})
    assert meta.input_size == (160, 160)
    assert meta.preprocessing == Preprocessing("scale", scale=0.00784313725, offset=-1.0)
    assert meta.decision == Decision(threshold=0.8, fallback="Other")
    assert meta.extra == {"metrics": {"accuracy": 0.9}}
    path = meta.write(tmp_path)
    assert path.name == "metadata.json"
    again = ModelMetadata.read(path)
    assert again.to_dict() == meta.to_dict()
    assert again.source == str(path)


def test_fallback_is_the_course_contract():
    meta = ModelMetadata.fallback()
    assert meta.to_dict()["preprocessing"] == {
        "mode": "mean_subtract",
        "mean": [123.68, 116.779, 103.939],
    }
    assert meta.input_size == (224, 224) and meta.classes == ("Cat", "Dog", "Other")
    assert meta.source == "fallback" and meta.decision is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other/2"}, "unknown metadata format"),
        ({"classes": ["Cat"]}, "'classes'"),
        ({"classes": ["Cat", "Cat"]}, "'classes'"),
        ({"input_size": [160]}, "'input_size'"),
        ({"input_size": [160, 0]}, "'input_size'"),
        ({"resize": "nearest"}, "resize 'nearest' is not supported"),
        ({"preprocessing": {"mode": "magic"}}, "preprocessing.mode 'magic'"),
        ({"preprocessing": {"mode": "scale"}}, "preprocessing.scale"),
        ({"preprocessing": {"mode": "mean_subtract", "mean": [1, 2]}}, "preprocessing.mean"),
        ({"decision": {"rule": "vote"}}, "'decision'"),
        ({"decision": {"rule": "min_confidence", "threshold": 2, "fallback": "Other"}}, "between"),
        ({"decision": {"rule": "min_confidence", "threshold": 0.5, "fallback": "Fox"}}, "'Fox'"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], message: str):
    with pytest.raises(ModelLoadError, match=message):
        ModelMetadata.from_dict({**DOC, **change}, source="metadata.json")


def test_preprocessing_apply_matches_the_modes():
    pixels = np.array([[[255.0, 127.5, 0.0]]], dtype=np.float32)
    scaled = Preprocessing("scale", scale=1 / 127.5, offset=-1.0).apply(pixels)
    np.testing.assert_allclose(scaled, [[[1.0, 0.0, -1.0]]], atol=1e-6)
    mean = Preprocessing("mean_subtract", mean=(255.0, 100.0, 0.0)).apply(pixels)
    np.testing.assert_allclose(mean, [[[0.0, 27.5, 0.0]]])
    assert Preprocessing().apply(pixels.astype(np.uint8)).dtype == np.float32


@pytest.mark.parametrize(
    "preprocessing",
    [
        {"mode": "scale", "scale": 1 / 127.5, "offset": 1e308},
        {"mode": "scale", "scale": -2e6, "offset": 0},
        {"mode": "mean_subtract", "mean": [1e7, 0, 0]},
    ],
)
def test_preprocessing_numbers_are_bounded(preprocessing: dict[str, Any]):
    # each is a finite number, yet x * 1e308 overflows float32 and every answer is NaN
    with pytest.raises(ModelLoadError, match=r"between -1e\+06 and 1e\+06"):
        ModelMetadata.from_dict({**DOC, "preprocessing": preprocessing}, source="metadata.json")


def test_deeply_nested_metadata_is_a_one_line_model_error(tmp_path: Path):
    path = tmp_path / "metadata.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelLoadError) as caught:
        ModelMetadata.read(path)
    assert str(path) in str(caught.value) and "nested too deeply" in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_huge_values_are_cut_in_messages(tmp_path: Path):
    classes = [f"class{i}" for i in range(100_000)]
    decision = {"rule": "min_confidence", "threshold": 0.5, "fallback": "x" * 100_000}
    for change in ({"classes": classes, "decision": decision}, {"format": "f" * 100_000}):
        with pytest.raises(ModelLoadError) as caught:
            ModelMetadata.from_dict({**DOC, **change}, source="metadata.json")
        assert len(str(caught.value)) < 300
