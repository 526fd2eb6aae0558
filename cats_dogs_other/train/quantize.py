"""An int8 copy of a model folder's ``model.onnx``: ``model.int8.onnx`` beside it.

ONNX Runtime static quantization, QDQ format, weights int8 per output channel, activations
uint8 with ranges measured on training-split photos only (the held-out splits judge it). The
nodes from the backbone's last ``GlobalAveragePool`` on (the head and the familiarity gate)
stay float32: they are under 1% of the work, and the gate compares a cosine similarity with a
threshold to two decimals, which int8 would blur.

The backbone's features still move, so the gate's threshold is chosen again for the int8 file
on the validation and calibration splits (the same rule as training,
:func:`cats_dogs_other.train.familiarity.choose_gate`) and written into the int8 graph only.
The wheel serves the file with ``precision="int8"`` (the API's ``INFERENCE_PRECISION=int8``);
``metadata.json`` (classes, preprocessing, calibration) is shared with the float32 file.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.errors import TrainingError

log = logging.getLogger(__name__)

SOURCE_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CALIBRATION_PHOTOS = 256
BATCH = 16
HEAD_START = "GlobalAveragePool"


@dataclass(frozen=True)
class GateRefit:
    """The familiarity gate's threshold before and after, on ``n`` photos."""

    before: float
    after: float
    macro_recall_before: float
    macro_recall_after: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold_f32": self.before,
            "threshold_int8": self.after,
            "macro_recall_at_f32_threshold": self.macro_recall_before,
            "macro_recall_at_int8_threshold": self.macro_recall_after,
            "n": self.n,
            "chosen_on": "validation + calibration splits, int8 answers",
        }


class PhotoBatches:
    """ONNX Runtime's ``CalibrationDataReader``: batches of photos as the wheel feeds them."""

    def __init__(self, model_dir: Path, photos: Sequence[Path], input_name: str) -> None:
        self._batches = _pixel_batches(model_dir, photos)
        self._input = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}

    def rewind(self) -> None:  # pragma: no cover - ONNX Runtime calls it for some methods only
        raise TrainingError("the calibration photos are read once")


def _pixel_batches(model_dir: Path, photos: Sequence[Path]) -> Iterator[np.ndarray]:
    """Decoded, resized and normalised exactly as :class:`kto.inference.Inference` does."""
    from kto.inference import Inference

    inference = Inference(model_dir, warmup=False)
    prep = inference.metadata.preprocessing
    for i in range(0, len(photos), BATCH):
        pixels = np.stack([inference.preprocess(p) for p in photos[i : i + BATCH]])
        yield np.ascontiguousarray(prep.apply(pixels), dtype=np.float32)


def head_nodes(model: Any, start: str = HEAD_START) -> list[str]:
    """The node of type ``start`` that is last in the graph, and every node after it that
    depends on it: the part kept in float32. Empty when the graph has no such node."""
    nodes = list(model.graph.node)
    starts = [i for i, n in enumerate(nodes) if n.op_type == start]
    if not starts:
        return []
    first = nodes[starts[-1]]
    reached = set(first.output)
    kept = [first.name]
    for node in nodes[starts[-1] + 1 :]:
        if reached.intersection(node.input):
            reached.update(node.output)
            kept.append(node.name)
    return kept


def sample_photos(rows: Sequence[Path], n: int, seed: int) -> list[Path]:
    """``n`` photos drawn without replacement (all of them when fewer), in a fixed order."""
    rows = list(rows)
    return sorted(random.Random(seed).sample(rows, min(n, len(rows))), key=str)


def quantize_onnx(
    model_dir: Path, photos: Sequence[Path], out: Path, *, keep_head_f32: bool = True
) -> list[str]:
    """Write ``out`` from ``model_dir/model.onnx``; return the nodes left in float32."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not photos:
        raise TrainingError("quantization needs calibration photos from the training split")
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(model_dir / SOURCE_FILE), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        excluded = head_nodes(model) if keep_head_f32 else []
        quantize_static(
            str(prepared),
            str(out),
            PhotoBatches(model_dir, photos, model.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
        )
    return excluded


@dataclass(frozen=True)
class GateNodes:
    """Where the familiarity gate lives in a graph: ``sigmoid(slope * similarity + bias)``
    with ``bias = -slope * threshold``, one ``Gemm`` after ONNX Runtime's pre-processing."""

    similarity: str
    head_probabilities: str
    slope_name: str
    bias_name: str


def find_gate(model: Any) -> GateNodes | None:
    """The gate of a model built by :mod:`cats_dogs_other.train.familiarity`; None without."""
    producers = {out: node for node in model.graph.node for out in node.output}
    sigmoids = [n for n in model.graph.node if n.op_type == "Sigmoid"]
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    if len(sigmoids) != 1 or len(softmaxes) != 1:
        return None
    step = producers.get(sigmoids[0].input[0])
    if step is None or step.op_type != "Gemm" or len(step.input) != 3:
        return None
    return GateNodes(step.input[0], softmaxes[0].output[0], step.input[1], step.input[2])


def _initializer(model: Any, name: str) -> Any:
    found = [i for i in model.graph.initializer if i.name == name]
    if not found:
        raise TrainingError(f"the gate's parameter {name} is not a constant of the graph")
    return found[0]


def gate_threshold(model: Any, gate: GateNodes) -> tuple[float, float]:
    """(slope, threshold) as the graph holds them."""
    from onnx import numpy_helper

    slope = float(numpy_helper.to_array(_initializer(model, gate.slope_name)).reshape(-1)[0])
    bias = float(numpy_helper.to_array(_initializer(model, gate.bias_name)).reshape(-1)[0])
    return slope, round(-bias / slope, 4)


def set_gate_threshold(model: Any, gate: GateNodes, threshold: float) -> None:
    from onnx import numpy_helper

    slope, _ = gate_threshold(model, gate)
    tensor = _initializer(model, gate.bias_name)
    old = numpy_helper.to_array(tensor)
    new = np.full(old.shape, -slope * threshold, dtype=old.dtype)
    tensor.CopyFrom(numpy_helper.from_array(new, tensor.name))


def gate_inputs(path: Path, gate: GateNodes, batches: Iterator[np.ndarray]) -> tuple[Any, Any]:
    """The head's probabilities and the nearest-prototype similarity, from ``path``'s graph."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    for name in (gate.head_probabilities, gate.similarity):
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = [gate.head_probabilities, gate.similarity]
    parts = [session.run(wanted, {session.get_inputs()[0].name: x}) for x in batches]
    probs = np.concatenate([p for p, _ in parts])
    similarity = np.concatenate([s.reshape(len(s), -1).max(axis=1) for _, s in parts])
    return probs, similarity


def refit_gate(
    model_dir: Path, int8_path: Path, rows: Sequence[tuple[Path, int]], classes: Sequence[str]
) -> GateRefit | None:
    """Choose the int8 file's gate threshold on ``rows`` and write it into the file."""
    import onnx

    from cats_dogs_other.train.calibration import decide, macro_recall
    from cats_dogs_other.train.familiarity import SLOPE, blend, choose_gate

    model = onnx.load(str(int8_path))
    gate = find_gate(model)
    if gate is None:
        return None
    slope, before = gate_threshold(model, gate)
    if abs(slope - SLOPE) > 1e-3:
        raise TrainingError(f"the gate's slope is {slope}, not {SLOPE}: not a gate this code made")
    fallback = classes.index("Other")
    photos, labels = [p for p, _ in rows], np.asarray([y for _, y in rows])
    probs, similarity = gate_inputs(int8_path, gate, _pixel_batches(model_dir, photos))
    prototypes = int(_initializer(model, _prototype_name(model, gate)).dims[-1])
    after, _ = choose_gate(probs, similarity, labels, fallback, prototypes)
    after = before if after is None else after  # no threshold beats no gate: keep f32's

    def recall(t: float) -> float:
        answered = decide(blend(probs, similarity, t, fallback, slope), None, fallback)
        return round(macro_recall(labels, answered), 4)

    set_gate_threshold(model, gate, after)
    onnx.save(model, str(int8_path))
    return GateRefit(before, after, recall(before), recall(after), len(rows))


def _prototype_name(model: Any, gate: GateNodes) -> str:
    """The (d, k) prototype matrix: the constant input of the first MatMul before the gate."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names = {i.name for i in model.graph.initializer}
    pending = [gate.similarity]
    while pending:
        node = producers.get(pending.pop())
        if node is None:
            continue
        if node.op_type == "MatMul":
            return next(n for n in node.input if n in names)
        pending.extend(node.input)
    raise TrainingError("the gate's prototypes are not a constant of the graph")


CARD_HEADING = "## int8 export (INFERENCE_PRECISION=int8)"


def build_int8(
    model_dir: Path, data: Sequence[Path], photos: int = CALIBRATION_PHOTOS, seed: int = 0
) -> dict[str, Any]:
    """Quantize, choose the gate's threshold again, and judge the int8 file against the
    float32 folder with the champion/challenger gate on the test split; the record returned
    goes into metrics.json ``int8``."""
    from kto.inference.model import file_sha256

    from cats_dogs_other.train.reporting import champion
    from cats_dogs_other.train.reporting.heldout import rebuild_held_out

    model_dir = Path(model_dir)
    held = rebuild_held_out(model_dir, data)
    chosen = sample_photos([p for _, p, _ in held.train], photos, seed)
    out = model_dir / INT8_FILE
    excluded = quantize_onnx(model_dir, chosen, out)
    refit = refit_gate(
        model_dir, out, [(p, y) for _, p, y in held.val + held.calibration], held.classes
    )
    with tempfile.TemporaryDirectory(prefix="int8-challenger-") as scratch:
        challenger = _challenger_folder(model_dir, out, Path(scratch))
        result = champion.run_gate(model_dir, challenger, data, f"{model_dir} (f32)")
        confidence = {
            name: served_figures(folder, [(p, y) for _, p, y in held.test]).to_dict()
            for name, folder in (("f32", model_dir), ("int8", challenger))
        }
    gate = result.to_dict()
    gate["challenger"] = f"{model_dir / INT8_FILE} (int8)"
    return {
        "file": INT8_FILE,
        "bytes": out.stat().st_size,
        "sha256": file_sha256(out),
        "from": {"file": SOURCE_FILE, "sha256": file_sha256(model_dir / SOURCE_FILE)},
        "method": "onnxruntime quantize_static, QDQ, weights int8 per channel, activations "
        "uint8 MinMax",
        "calibration_photos": f"{len(chosen)} training-split photos (seed {seed})",
        "float32_nodes": excluded,
        "familiarity_gate": None if refit is None else refit.to_dict(),
        "champion_gate": gate,
        "test_confidence": confidence,
    }


def served_figures(folder: Path, rows: Sequence[tuple[Path, int]]) -> Any:
    """The card's confidence figures for what ``folder`` serves (calibrated) on ``rows``."""
    from kto.inference import Inference

    from cats_dogs_other.train.reporting.calibrate import answers, raw_probs
    from cats_dogs_other.train.reporting.confidence import figures

    inference = Inference(folder, warmup=False)
    served = answers(inference, inference.metadata, raw_probs(inference, rows))
    return figures(np.asarray([a["values"] for a in served]), np.asarray([y for _, y in rows]))


def _challenger_folder(model_dir: Path, int8: Path, scratch: Path) -> Path:
    """A folder the gate loads like any model: the int8 file as its model.onnx."""
    import shutil

    for name in ("metadata.json", "metrics.json"):
        shutil.copy(model_dir / name, scratch / name)
    shutil.copy(int8, scratch / SOURCE_FILE)
    return scratch


def card_section(record: dict[str, Any]) -> str:
    from cats_dogs_other.train.reporting.champion import table

    gate = record["familiarity_gate"]
    threshold = (
        ""
        if gate is None
        else f" The familiarity gate's threshold, chosen again on the int8 answers of the "
        f"validation and calibration splits (n = {gate['n']}): {gate['threshold_int8']} "
        f"(float32: {gate['threshold_f32']}; macro recall "
        f"{gate['macro_recall_at_int8_threshold']})."
    )
    from cats_dogs_other.train.reporting.confidence import ConfidenceFigures, figures_table

    verdict = "passes" if record["champion_gate"]["passed"] else "fails"
    body = table(record["champion_gate"]).split("\n", 1)[1]
    n = record["test_confidence"]["int8"]["n"]
    confidence = figures_table(
        [
            (f"test, {name}, calibrated (served)", ConfidenceFigures.from_dict(f))
            for name, f in record["test_confidence"].items()
        ]
    )
    return (
        f"{CARD_HEADING}\n\n"
        f"`{record['file']}` ({record['bytes'] / 1e6:.1f} MB, sha256 "
        f"`{record['sha256'][:12]}…`), bundled in this folder beside `model.onnx`, is "
        f"an int8 copy of `{record['from']['file']}` ({record['method']}), calibrated on "
        f"{record['calibration_photos']}; the head and the familiarity gate "
        f"({len(record['float32_nodes'])} nodes) stay float32.{threshold} The API serves it "
        "only with `INFERENCE_PRECISION=int8`; float32 stays the default (its measured speed "
        "and the rule for making it the default: docs/performance.md). Against the float32 "
        f"model on the held-out test split it **{verdict}** the champion/challenger gate:\n"
        + body
        + f"\nConfidence on the test split (n = {n}), both with metadata.json's calibration "
        "(fitted on the float32 answers):\n\n" + confidence + "\n"
    )


def write_record(model_dir: Path, record: dict[str, Any]) -> None:
    from cats_dogs_other.train.reporting.record import put_card_section, update_json

    update_json(Path(model_dir) / "metrics.json", {"int8": record})
    put_card_section(model_dir, card_section(record))
