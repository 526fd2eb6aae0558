"""``model.int8.onnx`` beside a folder's ``model.onnx``, calibrated on training-split photos;
the head and gate stay float32 (a cosine threshold at slope 100 that int8 would blur). The
method and the rule that makes it the default: docs/performance.md."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.reporting.int8 import SOURCE_FILE, bench_speed, judge
from cats_dogs_other.train.reporting.int8 import card_section as card_section
from cats_dogs_other.train.reporting.int8 import write_record as write_record

INT8_FILE, REJECTED_FILE = "model.int8.onnx", "model.int8.rejected.onnx"
CALIBRATION_PHOTOS, BATCH, HEAD_START = 256, 16, "GlobalAveragePool"


class PhotoBatches:
    """ONNX Runtime's ``CalibrationDataReader``."""

    def __init__(self, model_dir: Path, photos: Sequence[Path], input_name: str) -> None:
        self._batches = ({input_name: x} for x in _pixel_batches(model_dir, photos))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _pixel_batches(model_dir: Path, photos: Sequence[Path]) -> Iterator[np.ndarray]:
    """Decoded, resized and normalised exactly as :class:`kto.inference.Inference` does."""
    from kto.inference import Inference

    inference = Inference(model_dir, warmup=False, precision="f32")
    for i in range(0, len(photos), BATCH):
        pixels = np.stack([inference.preprocess(p) for p in photos[i : i + BATCH]])
        yield np.ascontiguousarray(inference.metadata.preprocessing.apply(pixels), np.float32)


def head_nodes(model: Any, start: str = HEAD_START) -> list[str]:
    """The last node of type ``start`` and every node after it that depends on it."""
    nodes = list(model.graph.node)
    starts = [i for i, n in enumerate(nodes) if n.op_type == start]
    if not starts:
        return []
    reached, kept = set(nodes[starts[-1]].output), [nodes[starts[-1]].name]
    for node in nodes[starts[-1] + 1 :]:
        if reached.intersection(node.input):
            reached.update(node.output)
            kept.append(node.name)
    return kept


def quantize_onnx(
    model_dir: Path, photos: Sequence[Path], out: Path, *, keep_head_f32: bool = True
) -> list[str]:
    """Returns the nodes left in float32."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not photos:
        raise TrainingError("quantization needs calibration photos from the training split")
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        prepared = str(Path(scratch) / "prepared.onnx")
        quant_pre_process(str(model_dir / SOURCE_FILE), prepared, skip_symbolic_shape=True)
        model = onnx.load(prepared)
        excluded = head_nodes(model) if keep_head_f32 else []
        reader = PhotoBatches(model_dir, photos, model.graph.input[0].name)
        quantize_static(
            prepared,
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
        )
    return excluded


class GateNodes(NamedTuple):
    """The familiarity gate, ``sigmoid(slope * similarity - slope * threshold)``: one ``Gemm``
    after ONNX Runtime's pre-processing, beside the head's ``Softmax``."""

    similarity: str
    head_probabilities: str
    slope_name: str
    bias_name: str


def find_gate(model: Any) -> GateNodes | None:
    producers = {out: node for node in model.graph.node for out in node.output}
    sigmoids = [n for n in model.graph.node if n.op_type == "Sigmoid"]
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    step = producers.get(sigmoids[0].input[0]) if len(sigmoids) == len(softmaxes) == 1 else None
    if step is None or step.op_type != "Gemm" or len(step.input) != 3:
        return None
    return GateNodes(step.input[0], softmaxes[0].output[0], step.input[1], step.input[2])


def _gate_constants(model: Any, gate: GateNodes) -> tuple[Any, Any]:
    """The slope's and the bias' initializers."""
    found = {i.name: i for i in model.graph.initializer}
    if missing := [n for n in (gate.slope_name, gate.bias_name) if n not in found]:
        raise TrainingError(f"the gate's parameter {missing[0]} is not a constant of the graph")
    return found[gate.slope_name], found[gate.bias_name]


def gate_threshold(model: Any, gate: GateNodes) -> tuple[float, float]:
    from onnx.numpy_helper import to_array

    slope, bias = (float(to_array(t).reshape(-1)[0]) for t in _gate_constants(model, gate))
    return slope, round(-bias / slope, 4)


def set_gate_threshold(model: Any, gate: GateNodes, threshold: float) -> None:
    from onnx.numpy_helper import from_array, to_array

    slope, tensor = gate_threshold(model, gate)[0], _gate_constants(model, gate)[1]
    old = to_array(tensor)
    tensor.CopyFrom(from_array(np.full(old.shape, -slope * threshold, old.dtype), tensor.name))


def refit_gate(
    model_dir: Path, int8_path: Path, rows: Sequence[tuple[Path, int]], classes: Sequence[str]
) -> dict[str, Any] | None:
    """Choose the int8 file's gate threshold on ``rows`` (the training rule) and write it in."""
    import onnx
    import onnxruntime as ort

    from cats_dogs_other.train.calibration import decide, macro_recall
    from cats_dogs_other.train.familiarity import SLOPE, blend, choose_gate

    model = onnx.load(str(int8_path))
    if (gate := find_gate(model)) is None:
        return None
    slope, before = gate_threshold(model, gate)
    if abs(slope - SLOPE) > 1e-3:
        raise TrainingError(f"the gate's slope is {slope}, not {SLOPE}: not a gate this code made")
    # the head's probabilities and the nearest-prototype similarity, read from the int8 graph
    probe, wanted = onnx.load(str(int8_path)), [gate.head_probabilities, gate.similarity]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in wanted)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    batches = _pixel_batches(model_dir, [p for p, _ in rows])
    parts = [session.run(wanted, {session.get_inputs()[0].name: x}) for x in batches]
    probs = np.concatenate([p for p, _ in parts])
    sim = np.concatenate([s.reshape(len(s), -1).max(axis=1) for _, s in parts])
    fallback, labels = classes.index("Other"), np.asarray([y for _, y in rows])
    meta = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    prototypes = int(meta["familiarity_gate"]["prototypes"])  # k of the graph's (d, k) matrix
    after = choose_gate(probs, sim, labels, fallback, prototypes)[0]
    after = before if after is None else after  # no threshold beats no gate: keep f32's

    def recall(t: float) -> float:
        answered = decide(blend(probs, sim, t, fallback, slope), None, fallback)
        return round(macro_recall(labels, answered), 4)

    set_gate_threshold(model, gate, after)
    onnx.save(model, str(int8_path))
    return {
        "threshold_f32": before,
        "threshold_int8": after,
        "n": len(rows),
        "macro_recall_at_f32_threshold": recall(before),
        "macro_recall_at_int8_threshold": recall(after),
        "chosen_on": "validation + calibration splits, int8 answers",
    }


def build_int8(
    model_dir: Path, data: Sequence[Path], photos: int = CALIBRATION_PHOTOS, seed: int = 0
) -> dict[str, Any]:
    """The metrics.json ``int8`` record; a file that fails the gate is renamed rejected."""
    from kto.inference.model import file_sha256

    from cats_dogs_other.train.reporting.heldout import rebuild_held_out

    model_dir = Path(model_dir)
    held = rebuild_held_out(model_dir, data)
    train = [p for _, p, _ in held.train]
    chosen = sorted(random.Random(seed).sample(train, min(photos, len(train))), key=str)
    if set(chosen) & {p for _, p, _ in held.val + held.calibration + held.test}:
        raise TrainingError("a calibration photo is also held out: the splits are not disjoint")
    out = model_dir / INT8_FILE
    excluded = quantize_onnx(model_dir, chosen, out)
    rows = [(p, y) for _, p, y in held.val + held.calibration]
    refit = refit_gate(model_dir, out, rows, held.classes)  # rewrites the file: before its hash
    record: dict[str, Any] = {
        "file": INT8_FILE,
        "bytes": out.stat().st_size,
        "sha256": file_sha256(out),
        "from": {"file": SOURCE_FILE, "sha256": file_sha256(model_dir / SOURCE_FILE)},
        "method": "onnxruntime quantize_static, QDQ, weights int8 per channel, "
        "activations uint8 MinMax",
        "calibration_photos": f"{len(chosen)} training-split photos (seed {seed})",
        "float32_nodes": excluded,
        "familiarity_gate": refit,
    }
    record.update(judge(model_dir, out, data, held), speed=bench_speed())
    if not record["champion_gate"]["passed"]:
        out.replace(model_dir / REJECTED_FILE)  # precision auto would serve it otherwise
        record["file"] = REJECTED_FILE
    return record
