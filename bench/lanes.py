"""``python -m bench.lanes``: one batch on all threads, or one batch per lane, quiet and contended.

The forward pass only (ONNX Runtime, the exported ``model.onnx``, batches of 8 pre-decoded
images), in-process, as the API's batcher runs it with the thread plan's two layouts of the same
CPUs (:mod:`kto.inference.cpus`):

- ``1x{n}``: one inference thread, the session's intra-op pool of ``n`` threads;
- ``{n}x1``: ``n`` lanes, each running its own batch on one session with one intra-op thread.

Each layout runs in short slices, interleaved with the other, with and without Debian's
``stress-ng --cpu 1`` beside it (as ``python -m bench``'s contended case), so a noisy
neighbour hits all of them alike; the medians of the slices are reported with the load average.

``python -m bench.lanes --slices 6 --seconds 1.5``
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

MODEL = REPO_ROOT / "cats_dogs_other" / "model" / "model.onnx"


def _session(threads: int) -> tuple[Any, Any]:
    from kto.inference.backends.onnx_backend import open_session

    session = open_session(MODEL, threads)
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
    parser.add_argument("--slices", type=int, default=6, help="slices per layout and case (6)")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per slice (1.5)")
    args = parser.parse_args(argv)
    n = args.cpus
    x = np.random.default_rng(0).random((args.batch, 224, 224, 3), dtype=np.float32)
    one, many = f"1x{n} batch {args.batch}", f"{n}x1 batch {args.lane_batch or args.batch}"
    layouts = {one: (_session(n), 1, x), many: (_session(1), n, x[: args.lane_batch])}
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
    _report(figures, one, many)
    return 0


def _report(figures: dict[tuple[str, str], list[tuple[float, float]]], one: str, many: str) -> None:
    def med(case: str, layout: str, k: int) -> float:
        return statistics.median(f[k] for f in figures[(case, layout)])

    for case in ("quiet", "contended"):
        a, b = med(case, one, 0), med(case, many, 0)
        print(
            f"{case:9} {one}: {a:6.1f} img/s ({med(case, one, 1):5.1f} per CPU-s)  "
            f"{many}: {b:6.1f} img/s ({med(case, many, 1):5.1f} per CPU-s)  "
            f"{many}/{one}: {b / a:.2f}"
        )
    for layout in (one, many):
        kept = med("contended", layout, 0) / med("quiet", layout, 0)
        print(f"{layout}: contended / quiet {kept:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
