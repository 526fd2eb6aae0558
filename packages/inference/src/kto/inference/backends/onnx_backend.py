"""The fast path: the exported ``model.onnx`` run by ONNX Runtime on the CPU, in float32.

The default runtime for an exported model (``auto``): on the quiet reference machine it was
faster than OpenVINO (the optional ``openvino`` backend) at a third of the install size. Needs
no TensorFlow. The metadata's normalisation is applied in NumPy before the session (the
exported graph is the Keras model alone), which costs well under a millisecond per batch.

Precision: the CPU execution provider computes float32 kernels throughout; nothing here (or in
its graph optimisations) lowers precision on CPUs with bf16/AMX units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kto.inference.backends import BackendName
from kto.inference.cpus import plan_threads
from kto.inference.errors import ModelLoadError
from kto.inference.metadata import ModelMetadata, Preprocessing

INSTALL_HINT = "pip install onnxruntime (a dependency of kto-keras-inference)"


class OnnxBackend:
    name: BackendName = "onnx"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.native: Any = open_session(path, threads)
        inputs, outputs = self.native.get_inputs(), self.native.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(f"{path}: the model must have exactly one input and one output")
        self._input, self._output = inputs[0], outputs[0]
        if self._input.type != "tensor(float)":
            raise ModelLoadError(
                f"{path}: the model's input must be float32, not {self._input.type}"
            )
        shape = tuple(self._input.shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ModelLoadError(
                f"the model's input must be (batch, height, width, 3), got {shape}"
            )
        if len(self._output.shape) != 2:
            raise ModelLoadError(
                f"the model's output must be (batch, classes), got {tuple(self._output.shape)}"
            )
        self._prep = Preprocessing("none")

    def declared_input_size(self) -> tuple[int, int] | None:
        height, width = self._input.shape[1:3]
        if isinstance(height, int) and isinstance(width, int):
            return height, width
        return None

    def output_width(self) -> int | None:
        width = self._output.shape[1]
        return width if isinstance(width, int) else None

    def bind(self, metadata: ModelMetadata) -> None:
        self._prep = metadata.preprocessing

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(self._prep.apply(batch), dtype=np.float32)
        (probs,) = self.native.run([self._output.name], {self._input.name: x})
        return np.asarray(probs, dtype=np.float32)


def open_session(path: Path, threads: int | None = None) -> Any:
    """A CPU session: ``threads`` intra-op threads (None: the thread plan's; 0: ONNX Runtime's
    own choice), no busy-waiting.

    The thread count is explicit by default: left at 0, ONNX Runtime starts one thread per
    physical core of the machine, ignoring a cgroup CPU quota, and pins them to cores, so a
    neighbour busy on one core stalls the thread pinned there (and every batch waits for it).

    Spinning is off, intra-op and inter-op: ONNX Runtime's default keeps idle pool threads
    polling for work. The API decodes images and runs its event loop on the same cores, and
    under a CPU quota the polling is time the pod is throttled for; a spinning worker would
    steal the cores while it waits for the next batch.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelLoadError(f"{path.name} needs ONNX Runtime: {INSTALL_HINT}") from exc
    ort.disable_telemetry_events()  # a no-op on Linux builds, which have no telemetry
    options = ort.SessionOptions()
    options.intra_op_num_threads = plan_threads().intra_op_threads if threads is None else threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no per-session chatter in the logs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load ONNX model {path}: {first}") from exc
