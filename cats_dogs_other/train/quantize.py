"""An int8 copy of a model folder's ``model.onnx``: ``model.int8.onnx`` beside it.

ONNX Runtime static quantization, QDQ, weights int8 per channel, activations uint8, ranges
from training-split photos only (the held-out splits judge it). From the backbone's last
``GlobalAveragePool`` on (head and familiarity gate: under 1% of the work, and a cosine
threshold at slope 100 that int8 would blur) the graph stays float32. The gate's threshold is
chosen again on the int8 answers of the validation and calibration splits and written into
the int8 graph only. The wheel serves the file by default (``precision="auto"``), so it keeps
that name only when it passes the champion/challenger gate against float32; otherwise it is
``model.int8.rejected.onnx``. ``metadata.json`` (calibration, drift reference) is shared: the
record says what fitting the calibration again on the int8 answers gives.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.errors import TrainingError

SOURCE_FILE, INT8_FILE, REJECTED_FILE = "model.onnx", "model.int8.onnx", "model.int8.rejected.onnx"
CALIBRATION_PHOTOS, BATCH, HEAD_START = 256, 16, "GlobalAveragePool"
CARD_HEADING = "## int8 export (served by default; INFERENCE_PRECISION=f32 pins float32)"
BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "results.json"
SPEED_RULE = 1.4  # int8 req/s over the f32 default's, 8 connections, one bench run


class PhotoBatches:
    """ONNX Runtime's ``CalibrationDataReader``: batches of photos as the wheel feeds them."""

    def __init__(self, model_dir: Path, photos: Sequence[Path], input_name: str) -> None:
        self._batches, self._input = _pixel_batches(model_dir, photos), input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}


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


def sample_photos(rows: Sequence[Path], n: int, seed: int) -> list[Path]:
    """``n`` photos drawn without replacement (all of them when fewer), in a fixed order."""
    return sorted(random.Random(seed).sample(list(rows), min(n, len(rows))), key=str)


def quantize_onnx(
    model_dir: Path, photos: Sequence[Path], out: Path, *, keep_head_f32: bool = True
) -> list[str]:
    """Write ``out`` from ``model_dir/model.onnx``; return the nodes left in float32."""
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


@dataclass(frozen=True)
class GateNodes:
    """The familiarity gate, ``sigmoid(slope * similarity - slope * threshold)``: one ``Gemm``
    after ONNX Runtime's pre-processing, beside the head's ``Softmax``."""

    similarity: str
    head_probabilities: str
    slope_name: str
    bias_name: str


def find_gate(model: Any) -> GateNodes | None:
    """The gate of a model built by :mod:`cats_dogs_other.train.familiarity`; None without."""
    producers = {out: node for node in model.graph.node for out in node.output}
    sigmoids = [n for n in model.graph.node if n.op_type == "Sigmoid"]
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    step = producers.get(sigmoids[0].input[0]) if len(sigmoids) == len(softmaxes) == 1 else None
    if step is None or step.op_type != "Gemm" or len(step.input) != 3:
        return None
    return GateNodes(step.input[0], softmaxes[0].output[0], step.input[1], step.input[2])


def _constant(model: Any, name: str) -> Any:
    found = [i for i in model.graph.initializer if i.name == name]
    if not found:
        raise TrainingError(f"the gate's parameter {name} is not a constant of the graph")
    return found[0]


def gate_threshold(model: Any, gate: GateNodes) -> tuple[float, float]:
    """(slope, threshold) as the graph holds them."""
    from onnx.numpy_helper import to_array

    slope = float(to_array(_constant(model, gate.slope_name)).reshape(-1)[0])
    return slope, round(
        -float(to_array(_constant(model, gate.bias_name)).reshape(-1)[0]) / slope, 4
    )


def set_gate_threshold(model: Any, gate: GateNodes, threshold: float) -> None:
    from onnx.numpy_helper import from_array, to_array

    slope, tensor = gate_threshold(model, gate)[0], _constant(model, gate.bias_name)
    old = to_array(tensor)
    tensor.CopyFrom(from_array(np.full(old.shape, -slope * threshold, old.dtype), tensor.name))


def _gate_inputs(path: Path, gate: GateNodes, batches: Iterator[np.ndarray]) -> tuple[Any, Any]:
    """The head's probabilities and the nearest-prototype similarity, from ``path``'s graph."""
    import onnx
    import onnxruntime as ort

    model, wanted = onnx.load(str(path)), [gate.head_probabilities, gate.similarity]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in wanted)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    parts = [session.run(wanted, {session.get_inputs()[0].name: x}) for x in batches]
    similarity = [s.reshape(len(s), -1).max(axis=1) for _, s in parts]
    return np.concatenate([p for p, _ in parts]), np.concatenate(similarity)


def _prototypes(model: Any, gate: GateNodes) -> int:
    """k of the (d, k) prototype matrix: the constant input of the first MatMul before the gate."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names, pending = {i.name: i for i in model.graph.initializer}, [gate.similarity]
    while pending:
        node = producers.get(pending.pop())
        if node is not None and node.op_type == "MatMul":
            return int(next(names[n] for n in node.input if n in names).dims[-1])
        pending.extend([] if node is None else node.input)
    raise TrainingError("the gate's prototypes are not a constant of the graph")


def refit_gate(
    model_dir: Path, int8_path: Path, rows: Sequence[tuple[Path, int]], classes: Sequence[str]
) -> dict[str, Any] | None:
    """Choose the int8 file's gate threshold on ``rows`` (the training rule) and write it in."""
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
    fallback, labels = classes.index("Other"), np.asarray([y for _, y in rows])
    probs, sim = _gate_inputs(int8_path, gate, _pixel_batches(model_dir, [p for p, _ in rows]))
    after = choose_gate(probs, sim, labels, fallback, _prototypes(model, gate))[0]
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
    """Quantize, choose the gate's threshold again, judge the int8 file against float32 with
    the champion/challenger gate on the test split and check the shared calibration: the
    record returned goes into metrics.json ``int8``."""
    from kto.inference.model import file_sha256

    from cats_dogs_other.train.reporting.heldout import rebuild_held_out

    model_dir = Path(model_dir)
    held = rebuild_held_out(model_dir, data)
    chosen = sample_photos([p for _, p, _ in held.train], photos, seed)
    out = model_dir / INT8_FILE
    excluded = quantize_onnx(model_dir, chosen, out)
    refit = refit_gate(
        model_dir, out, [(p, y) for _, p, y in held.val + held.calibration], held.classes
    )
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


def judge(model_dir: Path, int8: Path, data: Sequence[Path], held: Any) -> dict[str, Any]:
    """The champion/challenger gate (f32 champion), the served confidence of both and the
    calibration fitted again on the int8 answers, each file in a folder of its own."""
    from cats_dogs_other.train.reporting import champion
    from cats_dogs_other.train.reporting.calibrate import calibrate_model

    test = [(p, y) for _, p, y in held.test]
    with tempfile.TemporaryDirectory(prefix="int8-judge-") as scratch:
        f32, q = (
            _folder(model_dir, f, Path(scratch) / n)
            for f, n in ((model_dir / SOURCE_FILE, "f32"), (int8, "int8"))
        )
        gate = champion.run_gate(f32, q, data, f"{model_dir} (f32)").to_dict()
        served = {name: _served(folder, test) for name, folder in (("f32", f32), ("int8", q))}
        refit = calibrate_model(q, [(p, y) for _, p, y in held.calibration], test)
    gate["challenger"] = f"{model_dir / INT8_FILE} (int8)"
    meta = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    shared = meta.get("drift_reference") or {}
    check = {
        "fitted_on": f"{refit.to_dict()['fitted_on']}, int8 answers",
        "served": meta.get("calibration"),
        "refit": refit.calibration.to_dict(),
        "test_with_refit": refit.test_after.to_dict(),
        "prediction_counts": {
            "f32": shared.get("prediction_counts"),
            "int8": dict(refit.drift.prediction_counts),
        },
    }
    return {"champion_gate": gate, "test_confidence": served, "calibration_check": check}


def _folder(model_dir: Path, onnx_file: Path, into: Path) -> Path:
    """A folder holding only ``onnx_file`` as its model.onnx: loaded in that precision."""
    into.mkdir()
    for name in ("metadata.json", "metrics.json"):
        shutil.copy(model_dir / name, into / name)
    shutil.copy(onnx_file, into / SOURCE_FILE)
    return into


def _served(folder: Path, rows: Sequence[tuple[Path, int]]) -> dict[str, Any]:
    """The card's confidence figures for what ``folder`` serves (calibrated) on ``rows``."""
    from kto.inference import Inference

    from cats_dogs_other.train.reporting.calibrate import answers, raw_probs
    from cats_dogs_other.train.reporting.confidence import figures

    inference = Inference(folder, warmup=False)
    served = answers(inference, inference.metadata, raw_probs(inference, rows))
    labels = np.asarray([y for _, y in rows])
    return figures(np.asarray([a["values"] for a in served]), labels).to_dict()


def bench_speed(results: Path = BENCH_RESULTS) -> dict[str, Any] | None:
    """int8 over f32 req/s at 8 connections (medians of the rounds, quiet case) in one
    committed ``python -m bench`` run: systems ``int8``/``c`` (f32 default) or ``c``/``f32``."""
    if not results.is_file():
        return None
    run = json.loads(results.read_text(encoding="utf-8"))
    rps: dict[str, list[float]] = {}
    for p in run.get("points", []):
        if p.get("connections") == 8:
            rps.setdefault(p["system"], []).append(float(p["rps"]))
    pair = ("c", "f32") if "f32" in rps else ("int8", "c")
    if not all(s in rps for s in pair):
        return None
    int8, f32 = (float(np.median(rps[s])) for s in pair)
    return {
        "ratio": round(int8 / f32, 2),
        "int8_rps": round(int8, 1),
        "f32_rps": round(f32, 1),
        "run": run.get("started"),
        "model": run["environment"].get("model"),
        "machine": f"{run['environment']['cpu']}, {run['environment']['cores']} cores",
        "file": "bench/results/RESULTS.md",
    }


def card_section(record: dict[str, Any]) -> str:
    from cats_dogs_other.train.reporting.champion import table
    from cats_dogs_other.train.reporting.confidence import ConfidenceFigures, figures_table

    check = record.get("calibration_check")
    rows = [(f"test, {k}, shared calibration", v) for k, v in record["test_confidence"].items()]
    if check is not None:
        rows.append(("test, int8, calibration fitted on int8", check["test_with_refit"]))
    figures = figures_table([(k, ConfidenceFigures.from_dict(v)) for k, v in rows])
    return (
        f"{CARD_HEADING}\n\n{_what(record)}\n\n{_why(record)}\n\n"
        + table(record["champion_gate"]).split("\n", 1)[1].strip("\n")
        + f"\n\nConfidence on the test split (n = {record['test_confidence']['int8']['n']}), "
        "with metadata.json's calibration (fitted on the float32 answers), which both files "
        f"share:\n\n{figures.strip()}\n{_calibration(check)}"
    )


def _what(r: dict[str, Any]) -> str:
    gate = r["familiarity_gate"]
    text = (
        f"`{r['file']}` ({r['bytes'] / 1e6:.1f} MB, sha256 `{r['sha256'][:12]}…`), beside "
        f"`model.onnx`, is an int8 copy of `{r['from']['file']}` ({r['method']}), calibrated on "
        f"{r['calibration_photos']}; the head and the familiarity gate "
        f"({len(r['float32_nodes'])} nodes) stay float32."
    )
    if gate is None:
        return text
    return text + (
        " The familiarity gate's threshold, chosen again on the int8 answers of the validation "
        f"and calibration splits (n = {gate['n']}): {gate['threshold_int8']} (float32: "
        f"{gate['threshold_f32']}; macro recall {gate['macro_recall_at_int8_threshold']})."
    )


def _why(r: dict[str, Any]) -> str:
    speed, passed = r.get("speed"), r["champion_gate"]["passed"]
    measured = " (no committed bench run measured its speed)"
    if speed is not None:
        measured = (
            f" and in the committed bench run ({speed['file']}, {speed['run']}, "
            f"{speed['machine']}, {speed['model']}) the API served {speed['ratio']}x the float32 "
            f"default's requests per second at 8 connections ({speed['int8_rps']} against "
            f"{speed['f32_rps']}; the rule asks for at least {SPEED_RULE}x)"
        )
    met = passed and speed is not None and speed["ratio"] >= SPEED_RULE
    return (
        '**Served by default** (`INFERENCE_PRECISION=auto`, the wheel\'s `precision="auto"`): '
        f"it {'passes' if passed else 'fails'} the champion/challenger gate against the float32 "
        f"model{measured}. {'Both conditions hold.' if met else '**The rule is not met.**'} "
        "`INFERENCE_PRECISION=f32` pins `model.onnx`."
    )


def _calibration(check: dict[str, Any] | None) -> str:
    if check is None:
        return ""
    served, refit, counts = check["served"] or {}, check["refit"], check["prediction_counts"]
    return (
        f"\nFitted again on the {check['fitted_on']}, the temperatures would be "
        f"{refit['temperature']} / {refit['fallback_temperature']} (shared: "
        f"{served.get('temperature')} / {served.get('fallback_temperature')}); the last row "
        "shows what that would change. The drift reference's answers per class on the test "
        f"split: float32 {_counts(counts['f32'])}, int8 {_counts(counts['int8'])}.\n"
    )


def _counts(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (counts or {}).items()) or "none recorded"


def write_record(model_dir: Path, record: dict[str, Any]) -> None:
    from cats_dogs_other.train.reporting.record import put_card_section, update_json

    update_json(Path(model_dir) / "metrics.json", {"int8": record})
    put_card_section(model_dir, card_section(record))
