"""(a) The ceiling: in-process images/s of the wheel's batch path, decoding included.

The model runs on the backend the API picks for it (the exported model.onnx for the bundled
folder; ``INFERENCE_BACKEND=keras`` for the TensorFlow path).

``python -m bench.ceiling --model M --image I --duration S --batch-sizes 1,8,16,32`` prints one
JSON line: images/s per batch size, each measured for ``duration`` seconds after a warm-up.
Each batch is ``Inference.execute_batch`` on pre-read JPEG bytes: decode + resize of every
image (one after the other, as a script would) and one forward pass.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def measure(inference: object, data: bytes, batch_size: int, duration_s: float) -> float:
    batch = [data] * batch_size
    execute_batch = inference.execute_batch  # type: ignore[attr-defined]
    warm_until = time.perf_counter() + min(1.0, duration_s / 4)
    while time.perf_counter() < warm_until:
        execute_batch(batch)
    images, started = 0, time.perf_counter()
    deadline = started + duration_s
    while time.perf_counter() < deadline:
        execute_batch(batch)
        images += batch_size
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch-sizes", default="1,8,16,32")
    args = parser.parse_args()

    from kto.inference import Inference
    from kto.inference.runtime import configure_threads

    configure_threads(
        int(os.environ.get("TF_INTRA_OP_THREADS", "0")) or None,
        int(os.environ.get("TF_INTER_OP_THREADS", "0")) or None,
    )
    inference = Inference(
        args.model,
        backend=os.environ.get("INFERENCE_BACKEND", "auto"),  # type: ignore[arg-type]
        threads=int(os.environ.get("INFERENCE_THREADS", "0")) or None,
    )
    data = args.image.read_bytes()
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    result = {str(n): measure(inference, data, n, args.duration) for n in sizes}
    print("CEILINGJSON " + json.dumps({"images_per_s": result}), flush=True)


if __name__ == "__main__":
    main()
