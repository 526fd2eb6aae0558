"""``python -m bench.runtimes``: the candidate CPU runtimes on the same exported model, in-process.

Compares, interleaved in short bursts (so a noisy neighbour hits all alike): TensorFlow (the
wheel's Keras backend), ONNX Runtime (the wheel's ONNX backend) and, when the ``openvino``
package is installed (it is not a requirement), OpenVINO's CPU plugin reading the same
``model.onnx`` in f32 (``INFERENCE_PRECISION_HINT`` set explicitly: on AMX CPUs the plugin
would pick bf16 by itself) and, for information, in bf16; and, when the folder has one, the
int8 copy ``model.int8.onnx`` (``python -m cats_dogs_other.train quantize``) on ONNX Runtime
and OpenVINO. Reports images/s and CPU-ms per image (user + system time of this process:
steadier than wall time on a shared machine) at each batch size, the load average before and
after, and each runtime's agreement with the Keras model on real images.

``python -m bench.runtimes --images ../shared/datasets/cats_dogs_other --threads 1``
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Run = Callable[[np.ndarray], np.ndarray]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _openvino(model: Path, threads: int) -> dict[str, Run]:
    from kto.inference.backends.openvino_backend import import_openvino

    try:
        ov = import_openvino()  # without its telemetry
        import openvino.properties as props
        import openvino.properties.hint as hints
    except ImportError:
        return {}
    core = ov.Core()
    graph = core.read_model(str(model / "model.onnx"))  # the runtime's reader: no converter
    runs: dict[str, Run] = {}
    int8 = model / "model.int8.onnx"
    variants = [("openvino f32", ov.Type.f32, graph), ("openvino bf16", ov.Type.bf16, graph)]
    if int8.is_file():
        variants.append(("openvino int8", ov.Type.f32, core.read_model(str(int8))))
    for label, precision, source in variants:
        compiled = core.compile_model(
            source,
            "CPU",
            {
                hints.inference_precision: precision,
                hints.performance_mode: hints.PerformanceMode.LATENCY,
                props.inference_num_threads: threads,
            },
        )
        runs[label] = _infer_with(compiled)
    return runs


def _infer_with(compiled: Any) -> Run:
    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(compiled([x])[0])

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("cats_dogs_other/model"))
    parser.add_argument("--images", type=Path, help="folder of images for the agreement check")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: per core)")
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--burst", type=float, default=0.6, help="seconds per burst")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated (1,8)")
    args = parser.parse_args(argv)

    from kto.inference import Inference, configure_threads

    threads = args.threads or None
    configure_threads(threads, 1 if threads else None)
    keras = Inference(args.model, backend="keras")
    onnx = Inference(args.model, backend="onnx", threads=threads)
    runs: dict[str, Run] = {"tensorflow": keras.predict_arrays, "onnxruntime": onnx.predict_arrays}
    if (args.model / "model.int8.onnx").is_file():
        int8 = Inference(args.model, backend="onnx", threads=threads, precision="int8")
        runs["onnxruntime int8"] = int8.predict_arrays
    prep = keras.metadata.preprocessing
    for label, run in _openvino(args.model, args.threads or 0).items():
        runs[label] = lambda x, r=run: r(prep.apply(x))  # type: ignore[misc]

    if args.images:
        files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in {".png", ".jpg"})
        pixels = np.stack([keras.preprocess(p) for p in files])
        want = np.concatenate(
            [keras.predict_arrays(pixels[i : i + 8]) for i in range(0, len(pixels), 8)]
        )
        for label, run in runs.items():
            got = np.concatenate([run(pixels[i : i + 8]) for i in range(0, len(pixels), 8)])
            print(
                f"{label:>16}: largest probability difference {np.abs(got - want).max():.2e}, "
                f"argmax agreement {np.mean(got.argmax(1) == want.argmax(1)):.2%} "
                f"({len(files)} images)"
            )
    sizes = [int(n) for n in args.batch_sizes.split(",") if n]
    height, width = keras.input_size
    shape = (max(sizes), height, width, 3)
    batch = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    totals = {(label, n): [0.0, 0.0, 0.0] for label in runs for n in sizes}
    for run in runs.values():
        for n in sizes:
            run(batch[:n])
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for _ in range(args.cycles):
        for (label, n), acc in totals.items():
            run, x, images = runs[label], batch[:n], 0
            started, cpu = time.perf_counter(), _cpu_s()
            while time.perf_counter() - started < args.burst:
                run(x)
                images += n
            acc[0] += images
            acc[1] += time.perf_counter() - started
            acc[2] += _cpu_s() - cpu
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for (label, n), (done, wall, cpu) in totals.items():
        base = totals[("onnxruntime", n)]
        print(
            f"{label:>16} batch {n:>2}: {done / wall:6.1f} img/s, "
            f"{1000 * cpu / done:5.1f} CPU-ms/image, "
            f"{(done / wall) / (base[0] / base[1]):.2f}x onnxruntime f32"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
