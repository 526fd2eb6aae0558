"""Export a model folder to ONNX (``model.onnx``), kept only if it answers like the Keras model.

The API serves ONNX Runtime (no TensorFlow in the serving install), so the file must be the
trained model, not an approximation: both backends classify the same held-out images through
``kto.inference.Inference`` (decoded as served), and the export is kept only when every argmax
is equal and the largest probability difference is within ``TOLERANCE``. The check is recorded
in ``metadata.json`` (``exported``) and the card; a refused export writes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kto.inference import Inference
from kto.inference.decoding import ImageInput

from cats_dogs_other.train.dataset import IMAGE_SUFFIXES
from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.reporting.record import CARD, put_card_section, update_json

log = logging.getLogger(__name__)

EXPORT_FILE = "model.onnx"
TOLERANCE = 1e-4
"""Largest accepted |p_keras - p_onnx| over all images and classes (float32 export)."""
CARD_HEADING = "## Served runtime (ONNX export)"
_BATCH = 8


class ExportError(TrainingError):
    """The exported model does not answer like the Keras model; nothing was written."""


def export_model(
    model_dir: Path,
    images: Sequence[ImageInput],
    *,
    source: str,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Write ``model_dir/model.onnx`` if it agrees with ``model.keras`` on ``images``; returns
    the record stored under ``exported`` in metadata.json."""
    from cats_dogs_other.train.onnx_export import write_onnx

    if not images:
        raise ExportError("no images to verify the export on")
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # its per-pass optimiser report
    model_dir = Path(model_dir)
    reference = Inference(model_dir, backend="keras", warmup=False)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
    try:
        shutil.copy2(model_dir / "metadata.json", staging / "metadata.json")
        write_onnx(reference.model, staging / EXPORT_FILE)
        candidate = Inference(staging / EXPORT_FILE, backend="onnx", warmup=False)
        check = compare(reference, candidate, images)
        check |= {"images": len(images), "source": source, "tolerance": tolerance}
        if not (check["max_abs_probability_diff"] <= tolerance and check["argmax_agreement"] == 1):
            raise ExportError(
                f"the ONNX export of {model_dir} disagrees with the Keras model on {source}: "
                f"largest probability difference {check['max_abs_probability_diff']:.2e} "
                f"(tolerance {tolerance:g}), argmax agreement {check['argmax_agreement']:.2%}; "
                "nothing was written"
            )
        os.replace(staging / EXPORT_FILE, model_dir / EXPORT_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = _record(model_dir, reference, candidate, check)
    update_json(model_dir / "metadata.json", {"exported": record})
    if (model_dir / CARD).is_file():
        put_card_section(model_dir, card_section(record))
    return record


def _record(
    model_dir: Path, reference: Inference, candidate: Inference, check: dict[str, Any]
) -> dict[str, Any]:
    """What metadata.json keeps under ``exported``: the file, its origin, the tools, the check."""
    import onnxruntime
    import tf2onnx

    from cats_dogs_other.train.onnx_export import ONNX_OPSET

    return {
        "format": "onnx",
        "file": EXPORT_FILE,
        "bytes": (model_dir / EXPORT_FILE).stat().st_size,
        "sha256": candidate.sha256,
        "from": {"file": reference.model_path.name, "sha256": reference.sha256},
        "opset": ONNX_OPSET,
        "exported_with": f"keras Model.export (tf2onnx {tf2onnx.__version__})",
        "runtime": f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider",
        "precision": "float32",
        "verification": check,
    }


def compare(
    reference: Inference, candidate: Inference, images: Sequence[ImageInput]
) -> dict[str, Any]:
    """Largest probability difference and agreement of argmax and served answer, per image."""
    pixels = np.stack([reference.preprocess(image) for image in images])
    want = _predict(reference, pixels)
    got = _predict(candidate, pixels)
    served = [
        reference.to_result(w)["prediction"] == candidate.to_result(g)["prediction"]
        for w, g in zip(want, got, strict=True)
    ]
    return {
        "max_abs_probability_diff": float(np.abs(want - got).max()),
        "argmax_agreement": float(np.mean(want.argmax(axis=1) == got.argmax(axis=1))),
        "prediction_agreement": float(np.mean(served)),
    }


def _predict(inference: Inference, pixels: np.ndarray) -> np.ndarray:
    batches = range(0, len(pixels), _BATCH)
    return np.concatenate([inference.predict_arrays(pixels[i : i + _BATCH]) for i in batches])


def card_section(record: dict[str, Any]) -> str:
    check = record["verification"]
    return (
        f"{CARD_HEADING}\n\n"
        f"The API serves `{record['file']}` ({record['bytes'] / 1e6:.1f} MB) with "
        f"{record['runtime']}, in {record['precision']}: `{record['from']['file']}` exported "
        f"through {record['exported_with']}, opset {record['opset']}. The Keras file stays the "
        "reference (`INFERENCE_BACKEND=keras` serves it). Each file's sha256, as `GET /model` "
        "lists them (`files`; its `sha256` is the served file's):\n\n"
        "| file | | sha256 |\n"
        "|---|---|---|\n"
        f"| `{record['file']}` | served | `{record['sha256']}` |\n"
        f"| `{record['from']['file']}` | trained, exported from "
        f"| `{record['from']['sha256']}` |\n\n"
        f"Checked against the Keras model on {check['images']} images ({check['source']}), both "
        "decoded and classified as the API does:\n\n"
        "| largest probability difference | tolerance | argmax agreement | served answers equal |\n"
        "|---|---|---|---|\n"
        f"| {check['max_abs_probability_diff']:.2e} | {check['tolerance']:g} "
        f"| {check['argmax_agreement']:.1%} | {check['prediction_agreement']:.1%} |\n\n"
        "No reduced-precision mode is offered: the served answers are the float32 model's.\n"
    )


def held_out_files(model_dir: Path, data_dir: Path) -> list[Path]:
    """The test (and validation, when listed) files metrics.json names, found below ``data_dir``."""
    metrics_path = model_dir / "metrics.json"
    if not metrics_path.is_file():
        return []
    split = json.loads(metrics_path.read_text(encoding="utf-8")).get("split", {})
    names = [*split.get("test_files", []), *split.get("val_files", [])]
    if not names or not data_dir.is_dir():
        return []
    by_name = {p.name: p for p in data_dir.rglob("*") if p.is_file()}
    # Entries are "source/file name" (several sources) or a bare file name (one source).
    files = [name.rsplit("/", 1)[-1] for name in names]
    return [by_name[name] for name in files if name in by_name]


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
