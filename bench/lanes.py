"""``python -m bench.lanes``: one batch on all threads, or one batch per lane, quiet and contended.

The forward pass only (ONNX Runtime, the bundled model's served file, batches of pre-decoded
images), in-process, as the API's batcher runs it with the layouts of the thread plan
(:mod:`kto.inference.cpus`):

- ``1x{n}``: one inference thread, the session's intra-op pool of ``n`` threads;
- ``{k}x1``: ``k`` lanes, each running its own batch on one session with one intra-op thread,
  for each ``k`` of ``--lanes`` (more lanes than CPUs: the kernel shares the cores between them).

Each layout runs in short slices, interleaved with the others, with and without Debian's
``stress-ng --cpu 1`` beside it (as ``python -m bench``'s contended case, in this process's
session), so a noisy neighbour hits all of them alike; the medians of the slices are reported
with the load average.

``python -m bench.lanes --slices 6 --seconds 1.5 --lanes 2,4,8``
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from bench.contention import cpu_hog
from bench.workload import REPO_ROOT
from tools.procfs import load_average

MODEL_DIR = REPO_ROOT / "cats_dogs_other" / "model"


def _session(model: Path, threads: int) -> tuple[Any, Any]:
    from kto.inference.backends.onnx_backend import open_session

    session = open_session(model, threads)
    inp = session.get_inputs()[0]
    return session, inp


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _slice(
    session: Any, name: str, x: np.ndarray, lanes: int, seconds: float
) -> tuple[float, float]:
    """(images per second, images per CPU-second) over ``seconds`` with ``lanes`` threads
    each running whole batches."""
    done = [0] * lanes
    stop = time.monotonic() + seconds

    def lane(i: int) -> None:
        while time.monotonic() < stop:
            session.run(None, {name: x})
            done[i] += len(x)

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(lanes)]
    started, cpu = time.monotonic(), _cpu_s()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started), sum(done) / max(_cpu_s() - cpu, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lanes", description=__doc__)
    parser.add_argument("--cpus", type=int, default=2, help="threads to lay out (2)")
    parser.add_argument("--batch", type=int, default=8, help="images per batch (8)")
    parser.add_argument(
        "--lane-batch", type=int, help="images per batch of each lane (--batch; the batcher's "
        "split of one wave between idle lanes: --batch / --cpus)",
    )  # fmt: skip
    parser.add_argument(
        "--lanes", default="", help="comma-separated lane counts (--cpus), e.g. 2,4,8"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=_served_model(),
        help="ONNX file (the bundled model's served one)",
    )
    parser.add_argument("--slices", type=int, default=6, help="slices per layout and case (6)")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per slice (1.5)")
    args = parser.parse_args(argv)
    n, counts = args.cpus, [int(k) for k in (args.lanes or str(args.cpus)).split(",")]
    x = np.random.default_rng(0).random((args.batch, 224, 224, 3), dtype=np.float32) * 255
    one, lane_x = f"1x{n} batch {args.batch}", x[: args.lane_batch]
    single = _session(args.model, 1)
    layouts = {one: (_session(args.model, n), 1, x)}
    layouts |= {f"{k}x1 batch {len(lane_x)}": (single, k, lane_x) for k in counts}
    print(f"model: {args.model}", flush=True)
    for (session, inp), lanes, xs in layouts.values():  # warm-up
        _slice(session, inp.name, xs, lanes, 0.5)
    print(f"load average before: {load_average()}", flush=True)
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    log_dir = Path(tempfile.gettempdir())
    for _ in range(args.slices):
        for case in ("quiet", "contended"):
            with cpu_hog(log_dir) if case == "contended" else nullcontext():
                for layout, ((session, inp), lanes, xs) in layouts.items():
                    rate = _slice(session, inp.name, xs, lanes, args.seconds)
                    figures.setdefault((case, layout), []).append(rate)
    print(f"load average after: {load_average()}", flush=True)
    _report(figures, list(layouts))
    return 0


def _served_model() -> Path:
    int8 = MODEL_DIR / "model.int8.onnx"
    return int8 if int8.is_file() else MODEL_DIR / "model.onnx"


def _report(figures: dict[tuple[str, str], list[tuple[float, float]]], layouts: list[str]) -> None:
    def med(case: str, layout: str, k: int) -> float:
        return statistics.median(f[k] for f in figures[(case, layout)])

    print("| layout | quiet img/s | per CPU-s | contended img/s | per CPU-s | kept | x 1st quiet |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = med("quiet", layouts[0], 0)
    for layout in layouts:
        q, c = med("quiet", layout, 0), med("contended", layout, 0)
        print(
            f"| {layout} | {q:.1f} | {med('quiet', layout, 1):.1f} | {c:.1f} | "
            f"{med('contended', layout, 1):.1f} | {c / q:.2f} | {q / base:.2f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
