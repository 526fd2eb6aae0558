"""Inference: loading .keras/.h5, the compiled forward pass and the public result dict."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from kto.inference import (
    ImageTooLargeError,
    Inference,
    InvalidImageError,
    ModelLoadError,
    ModelOutputError,
)
from PIL import Image

from cats_dogs_other.testing.tiny_model import save_tiny_model, solid_colour_png

COLOURS = {"Cat": (220, 30, 20), "Dog": (25, 210, 40), "Other": (30, 20, 230)}


def check_colour_rule(inf: Inference) -> None:
    for expected, colour in COLOURS.items():
        result = inf.execute(solid_colour_png(colour))
        assert result["prediction"] == expected
        assert max(result["values"]) > 0.95


@pytest.mark.parametrize("fixture", ["keras_model_path", "h5_model_path"])
def test_loads_keras_and_legacy_h5(request, fixture):
    path: Path = request.getfixturevalue(fixture)
    inf = Inference(path)
    assert inf.model_path == path
    assert inf.metadata.source.endswith("metadata.json")
    assert inf.metadata.input_size == (32, 32)
    assert inf.classes == ("Cat", "Dog", "Other")
    check_colour_rule(inf)


def test_directory_holding_model_keras(keras_model_path: Path):
    assert Inference(keras_model_path.parent, warmup=False).model_path == keras_model_path


def test_sha256_is_the_model_files_digest(inference: Inference, keras_model_path: Path):
    assert inference.sha256 == hashlib.sha256(keras_model_path.read_bytes()).hexdigest()


def test_legacy_model_without_metadata_uses_the_course_contract(legacy_h5_path: Path):
    inf = Inference(legacy_h5_path)
    meta = inf.metadata
    assert meta.source == "fallback"
    assert meta.input_size == (224, 224)
    assert meta.classes == ("Cat", "Dog", "Other")
    assert meta.preprocessing.mode == "mean_subtract"
    assert meta.preprocessing.mean == (123.68, 116.779, 103.939)
    assert inf.preprocess(solid_colour_png((1, 2, 3))).shape == (224, 224, 3)
    check_colour_rule(inf)


def test_fallback_takes_the_input_size_the_model_declares(tmp_path: Path):
    inf = Inference(save_tiny_model(tmp_path, input_size=(20, 28), with_metadata=False))
    assert inf.metadata.source == "fallback"
    assert inf.input_size == (20, 28)
    check_colour_rule(inf)


def test_result_is_plain_floats_in_class_order(inference: Inference):
    result = inference.execute(solid_colour_png(COLOURS["Dog"]))
    assert set(result) == {"prediction", "values", "probabilities"}
    assert all(type(v) is float for v in result["values"])
    assert list(result["probabilities"]) == ["Cat", "Dog", "Other"]
    assert list(result["probabilities"].values()) == result["values"]
    assert len(result["values"]) == 3
    assert result["values"].index(max(result["values"])) == 1  # Dog is the second class
    assert sum(result["values"]) == pytest.approx(1.0, abs=1e-5)


def test_execute_batch_equals_execute_image_by_image(inference: Inference, encode, noise):
    images = [
        solid_colour_png(COLOURS["Cat"], size=(300, 200)),
        encode(noise((50, 70), seed=1), "JPEG"),
        encode(Image.new("RGBA", (9, 9), (0, 0, 255, 200)), "PNG"),
        encode(Image.new("L", (64, 32), 90), "WEBP"),
        solid_colour_png(COLOURS["Dog"], size=(1, 1)),
    ]
    batch = inference.execute_batch(images)
    assert len(batch) == len(images)
    for image, from_batch in zip(images, batch, strict=True):
        single = inference.execute(image)
        assert from_batch["prediction"] == single["prediction"]
        np.testing.assert_allclose(from_batch["values"], single["values"], rtol=1e-5, atol=1e-6)
    assert inference.execute_batch([]) == []


def test_execute_accepts_path_bytes_and_file_object(inference: Inference, tmp_path: Path):
    data = solid_colour_png(COLOURS["Other"])
    path = tmp_path / "blue.png"
    path.write_bytes(data)
    with path.open("rb") as fh:
        results = [inference.execute(x) for x in (path, str(path), data, io.BytesIO(data), fh)]
    assert all(r == results[0] for r in results)
    assert results[0]["prediction"] == "Other"


def test_decision_rule_falls_back_below_threshold(tmp_path: Path):
    decision = {"rule": "min_confidence", "threshold": 0.9, "fallback": "Other"}
    inf = Inference(save_tiny_model(tmp_path, decision=decision))
    assert inf.metadata.decision is not None
    unsure = inf.execute(solid_colour_png((150, 110, 0)))  # reddish-olive: Cat, but ~0.83
    assert unsure["values"].index(max(unsure["values"])) == 0
    assert max(unsure["values"]) < 0.9
    assert unsure["prediction"] == "Other"
    assert inf.execute(solid_colour_png((255, 0, 0)))["prediction"] == "Cat"


def test_to_result_applies_rule_and_checks_length(inference: Inference):
    assert inference.to_result(np.array([0.1, 0.7, 0.2], dtype=np.float32)) == {
        "prediction": "Dog",
        "values": pytest.approx([0.1, 0.7, 0.2]),
        "probabilities": {
            "Cat": pytest.approx(0.1),
            "Dog": pytest.approx(0.7),
            "Other": pytest.approx(0.2),
        },
    }
    with pytest.raises(ValueError, match="expected 3 probabilities"):
        inference.to_result([0.5, 0.5])


def test_max_pixels_is_configurable(keras_model_path: Path):
    inf = Inference(keras_model_path, max_pixels=1000, warmup=False)
    with pytest.raises(ImageTooLargeError):
        inf.execute(solid_colour_png(COLOURS["Cat"], size=(40, 40)))
    assert inf.execute(solid_colour_png(COLOURS["Cat"], size=(20, 40)))["prediction"] == "Cat"


def test_execute_batch_names_the_bad_image(inference: Inference):
    with pytest.raises(InvalidImageError, match=r"image #2: .*empty") as info:
        inference.execute_batch([solid_colour_png(COLOURS["Cat"]), b""])
    assert info.value.reason == "empty"


def test_predict_arrays_shapes(inference: Inference):
    pixels = np.stack([inference.preprocess(solid_colour_png(c)) for c in COLOURS.values()])
    assert pixels.dtype == np.float32 and pixels.shape == (3, 32, 32, 3)
    assert pixels.max() > 200  # raw 0..255 pixels: normalisation is inside the graph
    probs = inference.predict_arrays(pixels)
    assert probs.shape == (3, 3)
    assert probs.argmax(axis=1).tolist() == [0, 1, 2]
    np.testing.assert_allclose(inference.predict_arrays(pixels.astype(np.uint8)), probs)
    assert inference.predict_arrays(np.zeros((0, 32, 32, 3))).shape == (0, 3)
    with pytest.raises(ValueError, match=r"\(n, 32, 32, 3\)"):
        inference.predict_arrays(np.zeros((1, 64, 64, 3)))


def test_predict_arrays_from_many_threads(inference: Inference):
    rng = np.random.default_rng(7)
    batches = [rng.uniform(0, 255, (n, 32, 32, 3)).astype(np.float32) for n in (1, 3, 8, 17, 32)]
    serial = [inference.predict_arrays(b) for b in batches]
    with ThreadPoolExecutor(max_workers=5) as pool:
        for _ in range(4):
            parallel = list(pool.map(inference.predict_arrays, batches))
            for a, b in zip(serial, parallel, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_min_side_refuses_tiny_images_only_when_asked(keras_model_path: Path):
    icon = solid_colour_png(COLOURS["Dog"], size=(14, 25))
    assert Inference(keras_model_path).execute(icon)["prediction"] == "Dog"  # default: any size
    strict = Inference(keras_model_path, min_side=32)
    with pytest.raises(InvalidImageError, match="25x14 pixels: too small") as info:
        strict.execute(icon)
    assert info.value.reason == "too_small"
    assert strict.execute(solid_colour_png(COLOURS["Dog"], size=(32, 40)))["prediction"] == "Dog"
    with pytest.raises(ValueError, match="min_side"):
        Inference(keras_model_path, min_side=0)


# --- outputs that are not probabilities ------------------------------------------------------

_HUGE = np.float32(3e38)  # near float32's largest: two of them add up to infinity


def test_warmup_refuses_a_model_that_outputs_nan(models_dir: Path):
    path = save_tiny_model(models_dir / "nan", dense=(np.eye(3), np.full(3, np.inf)))
    with pytest.raises(ModelLoadError, match="NaN or infinity for a blank image"):
        Inference(path)


def test_warmup_refuses_a_model_whose_rows_do_not_sum_to_one(models_dir: Path):
    path = save_tiny_model(models_dir / "logits", activation="linear")
    with pytest.raises(ModelLoadError, match=r"sum to .*, not 1") as caught:
        Inference(path)
    assert "\n" not in str(caught.value)


def test_a_nan_answer_is_an_error_never_a_class(models_dir: Path):
    # blank images give finite logits (warm-up passes); red ones overflow to inf - inf = NaN
    path = save_tiny_model(models_dir / "overflow", dense=(np.eye(3) * _HUGE, np.full(3, _HUGE)))
    inf = Inference(path)
    with pytest.raises(ModelOutputError, match="NaN or infinity"):
        inf.execute(solid_colour_png((255, 0, 0)))
    with pytest.raises(ModelOutputError):
        inf.to_result([float("nan"), 0.5, 0.5])


def test_a_class_list_that_does_not_fit_is_named_in_a_short_line(models_dir: Path):
    import json

    path = save_tiny_model(models_dir / "many-classes")
    meta = json.loads((path.parent / "metadata.json").read_text())
    meta["classes"] = [f"class{i}" for i in range(100_000)]
    (path.parent / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="100,000 classes") as caught:
        Inference(path)
    assert len(str(caught.value)) < 300
