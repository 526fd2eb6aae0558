"""The package's promises about itself: a cheap import and an untouched Pillow."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kto.inference
import pytest


@pytest.mark.process
def test_import_does_not_load_tensorflow():
    code = (
        "import sys, kto.inference; "
        "from PIL import Image, ImageFile; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'heavy import'; "
        "assert Image.MAX_IMAGE_PIXELS == 89_478_485 and ImageFile.LOAD_TRUNCATED_IMAGES is False"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_serving_wheel_has_no_exporter():
    # Writing model.onnx is a training step (cats_dogs_other.train.onnx_export), not serving.
    import importlib.util

    assert importlib.util.find_spec("kto.inference.onnx_export") is None


def test_the_built_wheel_ships_no_test_only_code():
    # The tests' tiny model is cats_dogs_other.testing.tiny_model and the hostile-file builders
    # are tools/hostile.py: nothing only a test needs goes into the serving wheel.
    import zipfile

    wheels = sorted((Path(__file__).resolve().parents[1] / "dist").glob("*.whl"))
    if not wheels:
        pytest.skip("no built wheel in packages/inference/dist: ./init_packages.sh builds it")
    names = zipfile.ZipFile(wheels[-1]).namelist()
    modules = [name for name in names if name.endswith(".py")]
    assert "kto/inference/__init__.py" in modules
    offending = [m for m in modules if re.search(r"(^|/)(testing|tests?|conftest)(/|\.py$)", m)]
    assert offending == []
    assert not any("onnx_export" in m or "hostile" in m for m in modules)


def test_public_names():
    for name in (
        "Inference",
        "InferenceError",
        "InvalidImageError",
        "ImageTooLargeError",
        "ImageTooComplexError",
        "ImageUnverifiableError",
        "ModelOutputError",
        "DecodeLimits",
        "check_structure",
        "ModelLoadError",
        "ModelMetadata",
        "decode_image",
    ):
        assert hasattr(kto.inference, name)
    assert kto.inference.__version__ == "0.1.0"
    assert issubclass(kto.inference.InvalidImageError, ValueError)
    assert issubclass(kto.inference.ImageTooLargeError, kto.inference.InvalidImageError)
    assert issubclass(kto.inference.ImageTooComplexError, kto.inference.InvalidImageError)
    assert issubclass(kto.inference.ImageUnverifiableError, kto.inference.InvalidImageError)
    assert issubclass(kto.inference.ModelOutputError, kto.inference.InferenceError)


def test_configure_threads_refuses_to_be_silently_ignored():
    # Before TensorFlow runs anything the call applies (the API does that at start-up); once it
    # has run, TensorFlow would ignore new pool sizes, so the call must fail loudly instead.
    import tensorflow as tf

    _ = tf.constant(1.0) + 1.0
    kto.inference.configure_threads(None, 0)  # nothing asked: nothing to refuse
    different = tf.config.threading.get_intra_op_parallelism_threads() + 1
    with pytest.raises(RuntimeError):
        kto.inference.configure_threads(different)
