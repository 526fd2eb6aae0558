"""(a) The ceiling: in-process images/s of the wheel's batch path, decoding included.

``python -m bench.ceiling --model M --image I --backend B --precision P --duration S
--batch-sizes 1,8,16,32`` prints one JSON line: the backend and precision ``Inference`` resolved
(``auto`` as the API resolves it), then images/s and images per CPU-second (this process's
user + system time) per batch size, each measured for ``duration`` seconds after a warm-up.
Each batch is ``Inference.execute_batch`` on pre-read JPEG bytes: decode + resize of every
image (one after the other, as a script would) and one forward pass.

``python -m bench`` runs one ceiling per backend and precision that its API systems serve
(:func:`specs_for`), each in its own process (:func:`run`), beside the same neighbour as the
API rows it bounds: quiet, beside the CPU hog, or under ``taskset -c 0``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKEND_CHOICES = ("auto", "keras", "onnx", "openvino")  # kto.inference.backends'
PRECISION_CHOICES = ("auto", "f32", "int8")  # kto.inference.model's
BACKEND_LABELS = {"onnx": "ORT", "openvino": "OpenVINO", "keras": "TensorFlow"}


@dataclass(frozen=True)
class Spec:
    """What a ceiling runs: ``INFERENCE_BACKEND`` and ``INFERENCE_PRECISION`` as the API reads
    them (``auto`` resolved the API's way, in the ceiling's process)."""

    backend: str = "auto"
    precision: str = "auto"


def spec_of(env: Mapping[str, str]) -> Spec:
    return Spec(env.get("INFERENCE_BACKEND", "auto"), env.get("INFERENCE_PRECISION", "auto"))


def specs_for(
    systems: Sequence[str], envs: Mapping[str, Mapping[str, str]]
) -> dict[Spec, list[str]]:
    """Each distinct backend/precision the API systems among ``systems`` serve, with those
    systems (several share one: (c) and (c')); the default's when none is an API system."""
    found: dict[Spec, list[str]] = {}
    for system in systems:
        if system in envs:
            found.setdefault(spec_of(envs[system]), []).append(system)
    return found or {Spec(): []}


def label(backend: str | None, precision: str | None) -> str:
    """``(a) ceiling, ORT int8``; a bare ``(a) ceiling`` for runs that did not record them."""
    if not backend:
        return "(a) ceiling"
    return f"(a) ceiling, {BACKEND_LABELS.get(backend, backend)} {precision or ''}".rstrip()


def run(
    model: Path,
    image: Path,
    duration: float,
    sizes: str,
    spec: Spec,
    prefix: Sequence[str] = (),
) -> dict[str, Any]:
    """One ceiling process (``prefix``: e.g. ``taskset -c 0``); its JSON line as a dict."""
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "bench.ceiling", "--model", str(model),
         "--image", str(image), "--duration", f"{duration:g}", "--batch-sizes", sizes,
         "--backend", spec.backend, "--precision", spec.precision],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("CEILINGJSON ")), None)
    if line is None:
        raise RuntimeError(f"ceiling {spec} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    return result


def describe(result: Mapping[str, Any]) -> str:
    figures = ", ".join(
        f"batch {k}: {v:.1f} img/s" for k, v in result.get("images_per_s", {}).items()
    )
    return f"{label(result.get('backend'), result.get('precision'))}: {figures}"


def measure(
    inference: object, data: bytes, batch_size: int, duration_s: float
) -> tuple[float, float]:
    """Images per second and per CPU-second of this process."""
    batch = [data] * batch_size
    execute_batch = inference.execute_batch  # type: ignore[attr-defined]
    warm_until = time.perf_counter() + min(1.0, duration_s / 4)
    while time.perf_counter() < warm_until:
        execute_batch(batch)
    images, started, cpu_started = 0, time.perf_counter(), time.process_time()
    deadline = started + duration_s
    while time.perf_counter() < deadline:
        execute_batch(batch)
        images += batch_size
    cpu = time.process_time() - cpu_started
    return images / (time.perf_counter() - started), images / cpu if cpu > 0 else 0.0


def entries(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's ceiling processes; a results.json from before per-backend ceilings kept one
    list of images/s per round, on the default backend, quiet."""
    if "ceilings" in run:
        return list(run["ceilings"])
    return [
        {"case": "quiet", "round": i + 1, "systems": ["c"], "images_per_s": figures}
        for i, figures in enumerate(run.get("ceiling", []))
    ]


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(run: Mapping[str, Any], case: str = "quiet") -> dict[str, dict[str, Any]]:
    """Per ceiling label in ``case``: the API systems it bounds, the median images/s and images
    per CPU-second over the rounds per batch size, and the best batch size."""
    groups: dict[str, list[dict[str, Any]]] = {}
    systems: dict[str, list[str]] = {}
    for entry in entries(run):
        if entry.get("case", "quiet") == case:
            key = label(entry.get("backend"), entry.get("precision"))
            groups.setdefault(key, []).append(entry)
            bound = systems.setdefault(key, [])
            bound += [s for s in entry.get("systems", []) if s not in bound]
    out: dict[str, dict[str, Any]] = {}
    for key, runs in groups.items():
        sizes = sorted({k for e in runs for k in e["images_per_s"]}, key=int)
        by_batch = {n: _median([e["images_per_s"].get(n) for e in runs]) or 0.0 for n in sizes}
        per_cpu = {n: _median([e.get("images_per_cpu_s", {}).get(n) for e in runs]) for n in sizes}
        best = max(by_batch, key=lambda n: by_batch[n]) if by_batch else None
        out[key] = {
            "systems": systems[key], "by_batch": by_batch, "per_cpu": per_cpu,
            "best": by_batch[best] if best else None, "best_batch": best,
        }  # fmt: skip
    return out


def own(ceilings: Mapping[str, dict[str, Any]], system: str) -> tuple[str, dict[str, Any]] | None:
    """The ceiling (label, figures) of ``system``'s backend and precision, if it ran."""
    return next(((k, v) for k, v in ceilings.items() if system in v["systems"]), None)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch-sizes", default="1,8,16,32")
    parser.add_argument(
        "--backend", choices=BACKEND_CHOICES,
        default=os.environ.get("INFERENCE_BACKEND", "auto"),
        help="the runtime, as INFERENCE_BACKEND (default: that variable, else auto)",
    )  # fmt: skip
    parser.add_argument(
        "--precision", choices=PRECISION_CHOICES,
        default=os.environ.get("INFERENCE_PRECISION", "auto"),
        help="as INFERENCE_PRECISION (default: that variable, else auto)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from kto.inference import Inference
    from kto.inference.runtime import configure_threads

    configure_threads(
        int(os.environ.get("TF_INTRA_OP_THREADS", "0")) or None,
        int(os.environ.get("TF_INTER_OP_THREADS", "0")) or None,
    )
    inference = Inference(
        args.model,
        backend=args.backend,
        threads=int(os.environ.get("INFERENCE_THREADS", "0")) or None,
        precision=args.precision,
    )
    data = args.image.read_bytes()
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    figures = {str(n): measure(inference, data, n, args.duration) for n in sizes}
    result = {
        "backend": inference.backend,
        "precision": inference.precision,
        "images_per_s": {k: v[0] for k, v in figures.items()},
        "images_per_cpu_s": {k: v[1] for k, v in figures.items()},
    }
    print("CEILINGJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
