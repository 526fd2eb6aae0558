"""Compiled inference vs ``model.predict``, measured in one run on the same input.

Prints ms per single image through ``Inference.execute`` and images/s at batch 8 and 32
through ``execute_batch`` / ``predict_arrays``, then the same for ``model.predict``, and the
ratios. Uses the bundled model when present, else an untrained MobileNetV2 (224x224): the
weights do not matter for speed.

    python packages/inference/bench/bench_inference.py [--model PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from kto.inference import Inference, ModelMetadata, Preprocessing, configure_threads
from PIL import Image

BUNDLED_MODEL = Path(__file__).resolve().parents[3] / "cats_dogs_other" / "model" / "model.keras"


def main() -> None:
    args = parse_args()
    if args.threads:
        configure_threads(args.threads, 1)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or (BUNDLED_MODEL if BUNDLED_MODEL.is_file() else None)
        if model_path is None:
            model_path = save_mobilenet_v2(Path(tmp))
        started = time.perf_counter()
        inf = Inference(model_path)
        print(f"model: {inf.model_path} ({inf.model.count_params():,} parameters)")
        print(f"input: {inf.input_size}, load + warm-up {time.perf_counter() - started:.1f} s")
        run_benchmarks(inf, args.repeats)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a .keras/.h5 file (default: bundled model)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    parser.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: default)")
    return parser.parse_args()


def save_mobilenet_v2(directory: Path) -> Path:
    import keras

    model = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), weights=None, classes=3, classifier_activation="softmax"
    )
    path = directory / "model.keras"
    model.save(path)
    ModelMetadata(
        name="mobilenet-v2-untrained",
        input_size=(224, 224),
        preprocessing=Preprocessing("scale", scale=1 / 127.5, offset=-1.0),
    ).write(directory)
    return path


def photo_jpeg(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A JPEG with photo-like smooth content, so decoding costs what a real upload does."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call; calls are interleaved so every variant sees the same CPU load."""
    for fn in fns.values():
        fn()  # one untimed call each: caches, allocator, lazy paths
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def run_benchmarks(inf: Inference, repeats: int) -> None:
    images = [photo_jpeg(seed) for seed in range(32)]
    pixels = np.stack([inf.preprocess(img) for img in images])
    model_input = inf.metadata.preprocessing.apply(pixels)
    model = inf.model

    decode = medians(
        {
            "640x480": partial(inf.preprocess, images[0]),
            "4032x3024": partial(inf.preprocess, photo_jpeg(0, (4032, 3024))),
        },
        repeats,
    )
    print("\ndecode + resize to the model input (ms, median)")
    for name, seconds in decode.items():
        print(f"  {name + ' JPEG':<40}{seconds * 1e3:8.2f}")

    one = medians(
        {
            "execute": partial(inf.execute, images[0]),
            "predict_arrays": partial(inf.predict_arrays, pixels[:1]),
            "model.predict": partial(model.predict, model_input[:1], verbose=0),
        },
        repeats,
    )
    print(f"\nsingle image (ms per image, median of {repeats})")
    print(f"  {'execute (decode + compiled forward)':<40}{one['execute'] * 1e3:8.2f}")
    print(f"  {'predict_arrays, batch of 1':<40}{one['predict_arrays'] * 1e3:8.2f}")
    print(f"  {'model.predict, batch of 1':<40}{one['model.predict'] * 1e3:8.2f}")
    ratio = one["model.predict"] / one["predict_arrays"]
    print(f"  {'model.predict / predict_arrays':<40}{ratio:8.2f}x")

    for n in (8, 32):
        reps = max(6, repeats // (n // 4))
        t = medians(
            {
                "execute_batch": partial(inf.execute_batch, images[:n]),
                "predict_arrays": partial(inf.predict_arrays, pixels[:n]),
                "model.predict": partial(model.predict, model_input[:n], batch_size=n, verbose=0),
            },
            reps,
        )
        print(f"\nbatch of {n} (images/s, median of {reps})")
        print(f"  {'execute_batch (decode + forward)':<40}{n / t['execute_batch']:8.1f}")
        print(f"  {'predict_arrays (forward only)':<40}{n / t['predict_arrays']:8.1f}")
        print(f"  {'model.predict (forward only)':<40}{n / t['model.predict']:8.1f}")
        ratio = t["model.predict"] / t["predict_arrays"]
        print(f"  {'predict_arrays / model.predict':<40}{ratio:8.2f}x")


if __name__ == "__main__":
    main()
