"""The exported ``model.onnx`` run by OpenVINO's CPU plugin, in float32 (the ``openvino`` extra).

OpenVINO reads the ONNX file itself (no conversion step, no converter), so the same export serves
both runtimes. Measured in-process on the reference machine, it was 0.86-0.93x ONNX Runtime on
quiet cores but 1.38-1.55x it with a core-bound neighbour; which one ``auto`` picks is decided
by the committed bench run (see docs/performance.md).

Every setting that changes behaviour under shared cores is set here rather than left to the
plugin's defaults, which are tuned for a dedicated machine:

- ``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16/AMX units the plugin would otherwise pick
  bf16, and the answers would drift from ONNX Runtime's by more than 1e-4.
- ``NUM_STREAMS=1`` with ``PERFORMANCE_HINT=LATENCY``: one batch at a time on all the plan's
  threads. The API's batcher already runs one batch at a time; more streams would split the
  threads between streams that sit idle, or oversubscribe the cores when they do not.
- ``INFERENCE_NUM_THREADS``: the thread plan's intra-op count (:mod:`kto.inference.cpus`), not
  the machine's cores, so a CPU quota is respected.
- ``ENABLE_CPU_PINNING=False``: a pinned thread cannot leave a core that a neighbour keeps busy;
  unpinned, the kernel moves it to whichever core is free.
- Busy-waiting: OpenVINO has no switch like ONNX Runtime's ``allow_spinning``; its TBB workers
  poll briefly for work and then sleep. One stream keeps that to one set of workers.

Offline: ``import openvino`` imports its model converter, which sends a usage event to Google
Analytics from a forked process and counts imports in ``~/intel/`` (the ``openvino_telemetry``
package, on unless a consent file or ``CI=true`` says no). :func:`import_openvino` makes that
package unimportable first, so the converter falls back to its own no-op stub
(``openvino.tools.ovc.telemetry_stub``): a server in an air-gapped cluster never tries to call
out, and nothing is written to the home folder.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from kto.inference.backends import BackendName
from kto.inference.errors import ModelLoadError
from kto.inference.metadata import ModelMetadata, Preprocessing

INSTALL_HINT = "pip install 'kto-keras-inference[openvino]'"


def import_openvino() -> Any:
    """``import openvino`` without its telemetry (see the module's docstring). When the
    telemetry package was imported before, it stays as its own consent file says."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def openvino_available() -> bool:
    """Whether the optional runtime can be imported here."""
    try:
        import_openvino()
    except ImportError:
        return False
    return True


class OpenVinoBackend:
    name: BackendName = "openvino"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.native: Any = compile_model(path, threads)
        inputs, outputs = self.native.inputs, self.native.outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(f"{path}: the model must have exactly one input and one output")
        self._input_shape = inputs[0].get_partial_shape()
        self._output_shape = outputs[0].get_partial_shape()
        if self._input_shape.rank.get_length() != 4 or _dim(self._input_shape[3]) != 3:
            raise ModelLoadError(
                f"the model's input must be (batch, height, width, 3), got {self._input_shape}"
            )
        if self._output_shape.rank.get_length() != 2:
            raise ModelLoadError(
                f"the model's output must be (batch, classes), got {self._output_shape}"
            )
        self._prep = Preprocessing("none")
        self._local = threading.local()  # an infer request is not safe to share between threads

    def declared_input_size(self) -> tuple[int, int] | None:
        height, width = _dim(self._input_shape[1]), _dim(self._input_shape[2])
        return (height, width) if height is not None and width is not None else None

    def output_width(self) -> int | None:
        return _dim(self._output_shape[1])

    def bind(self, metadata: ModelMetadata) -> None:
        self._prep = metadata.preprocessing

    def predict(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.native.create_infer_request()
        x = np.ascontiguousarray(self._prep.apply(batch), dtype=np.float32)
        result = request.infer([x])
        return np.array(next(iter(result.values())), dtype=np.float32)  # a copy: buffers are reused


def compile_model(path: Path, threads: int | None = None) -> Any:
    """Read ``model.onnx`` and compile it for the CPU with the settings the module explains;
    ``threads``: None is the thread plan's count, 0 the plugin's own choice."""
    try:
        ov = import_openvino()
    except ImportError as exc:
        raise ModelLoadError(f"the openvino backend needs OpenVINO: {INSTALL_HINT}") from exc
    from kto.inference.cpus import plan_threads

    if threads is None:
        threads = plan_threads().intra_op_threads
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads),
        "ENABLE_CPU_PINNING": "NO",
    }
    try:
        core = ov.Core()
        return core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load ONNX model {path} with OpenVINO: {first}") from exc


def _dim(dimension: Any) -> int | None:
    return None if dimension.is_dynamic else int(dimension.get_length())
