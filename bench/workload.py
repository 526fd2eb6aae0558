"""The model and the image every part of the benchmark uses.

The bundled model folder (``cats_dogs_other/model``: model.keras and its export model.onnx)
when it exists; otherwise a MobileNetV2 (random weights, 160x160, 3 classes) built and exported
once into ``bench/results/raw/`` -- the same amount of compute, which is all a throughput
benchmark needs. Building happens in a
subprocess (``python -m bench.workload DIR``) so the harness itself never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from kto.inference.metadata import DEFAULT_CLASSES

from cats_dogs_other.core.paths import REPO_ROOT

BUNDLED_MODEL = REPO_ROOT / "cats_dogs_other" / "model"
INPUT_SIZE = (160, 160)


def stand_in_metadata(name: str, input_size: tuple[int, int]) -> dict[str, object]:
    return {
        "format": "kto-keras-inference/1",
        "name": name,
        "version": "0.0.0",
        "classes": list(DEFAULT_CLASSES),
        "input_size": list(input_size),
        "resize": "bilinear",
        "preprocessing": {"mode": "scale", "scale": 1 / 127.5, "offset": -1.0},
        "decision": None,
    }


def resolve_model(explicit: Path | None, raw_dir: Path) -> tuple[Path, str]:
    """Return (model folder or file, description); build the stand-in model if needed."""
    if explicit is not None:
        return explicit, f"{explicit} (given)"
    if (BUNDLED_MODEL / "model.onnx").is_file():
        return BUNDLED_MODEL, f"{BUNDLED_MODEL.relative_to(REPO_ROOT)} (bundled)"
    target = raw_dir / "mobilenetv2-160"
    path = target / "model.onnx"
    if not path.is_file():
        print(f"[bench] no bundled model; building a MobileNetV2 160x160 into {target}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "bench.workload", str(target)], check=True, cwd=REPO_ROOT
        )
    return target, "MobileNetV2 160x160, random weights (no bundled model yet)"


def build_stand_in(
    directory: Path,
    input_size: tuple[int, int] = INPUT_SIZE,
    name: str = "bench-mobilenetv2-random",
) -> Path:
    """Also used by ``reliability/`` (at 224x224): one stand-in builder for both harnesses."""
    import keras

    directory.mkdir(parents=True, exist_ok=True)
    backbone = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(*input_size, 3), pooling="avg"
    )
    outputs = keras.layers.Dense(3, activation="softmax")(backbone.output)
    model = keras.Model(backbone.input, outputs)
    tmp = directory / "model.tmp.keras"  # renamed at the end: a half-built model never counts
    model.save(tmp)
    metadata = stand_in_metadata(name, input_size)
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    path = directory / "model.keras"
    tmp.rename(path)
    from cats_dogs_other.train.onnx_export import write_onnx

    write_onnx(model, directory / "model.onnx")  # last: its presence marks a finished build
    return path


PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def make_image(size: tuple[int, int] = (640, 480), quality: int = 90) -> bytes:
    """A deterministic photo-like JPEG (smooth gradients plus noise), phone-upload sized."""
    from PIL import Image

    width, height = size
    rng = np.random.default_rng(20240601)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(xx / 47.0) * np.cos(yy / 61.0),
            128 + 90 * np.cos((xx + yy) / 83.0),
            128 + 80 * np.sin(yy / 29.0),
        ],
        axis=-1,
    )
    pixels = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def course_photo(size: tuple[int, int] = (640, 480), quality: int = 90) -> bytes | None:
    """A real photo at ``size``: the course photo whose re-encoding has the median weight.

    Every course photo is resized to ``size`` and saved as a JPEG at ``quality`` (what a phone
    or browser upload path does); the one in the middle by byte count is returned, so the pick
    is neither the cheapest nor the dearest to decode. None without ``../shared``.
    """
    from PIL import Image

    from cats_dogs_other.train.paths import default_data_dir

    files = sorted(p for p in default_data_dir().rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    encoded = []
    for path in files:
        with Image.open(path) as img:
            buffer = io.BytesIO()
            img.convert("RGB").resize(size).save(buffer, format="JPEG", quality=quality)
        encoded.append(buffer.getvalue())
    if not encoded:
        return None
    return sorted(encoded, key=len)[len(encoded) // 2]


def bench_image() -> tuple[bytes, str]:
    """The upload of every benchmark request, and where it comes from."""
    photo = course_photo()
    if photo is not None:
        return photo, "the median-weight course photo, resized and saved at quality 90"
    return make_image(), "synthetic (no ../shared): gradients plus noise, heavier than a photo"


def describe_image(data: bytes) -> str:
    """Format, size and weight of the uploaded image, for the report."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        return f"{img.format} {width}x{height}, {len(data) // 1024} KiB"


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the benchmark's stand-in model.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", type=int, default=INPUT_SIZE[0], help="square input size")
    parser.add_argument("--name", default="bench-mobilenetv2-random")
    args = parser.parse_args()
    print(build_stand_in(args.directory, (args.size, args.size), args.name))


if __name__ == "__main__":
    main()
