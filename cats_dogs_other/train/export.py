"""``model.onnx``, kept only if it answers like ``model.keras``: the API serves ONNX Runtime, so
both backends classify the same held-out images through ``kto.inference`` (decoded as served)
and a refused export writes nothing. The check goes into metadata.json ``exported`` and the card.
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

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.onnx_export import ONNX_OPSET, write_onnx
from cats_dogs_other.train.reporting.record import CARD, put_card_section, update_json

EXPORT_FILE = "model.onnx"
TOLERANCE = 1e-4  # largest accepted |p_keras - p_onnx| over all images and classes (float32)
CARD_HEADING = "## Served runtime (ONNX export)"
HELD_OUT = "held-out test+val files"  # what training and the export command verify on
_BATCH = 8


class ExportError(TrainingError):
    """The exported model does not answer like the Keras model; nothing was written."""


def export_model(
    model_dir: Path, images: Sequence[ImageInput], *, source: str, tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """Returns the record stored under ``exported`` in metadata.json."""
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
        check = _compare(reference, candidate, images)
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
    import onnxruntime
    import tf2onnx

    record = {
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
    update_json(model_dir / "metadata.json", {"exported": record})
    put_served_section(model_dir)
    return record


def put_served_section(model_dir: Path) -> None:
    """The card's served-runtime section, from metadata.json's ``exported`` and ``int8``
    records: rewritten by the export and by quantize's decision, so it names what is served."""
    meta = json.loads((Path(model_dir) / "metadata.json").read_text(encoding="utf-8"))
    if (Path(model_dir) / CARD).is_file() and "exported" in meta:
        put_card_section(model_dir, card_section(meta["exported"], meta.get("int8")))


def _compare(
    reference: Inference, candidate: Inference, images: Sequence[ImageInput]
) -> dict[str, Any]:
    """Largest probability difference and agreement of argmax and served answer, per image."""
    pixels = np.stack([reference.preprocess(image) for image in images])
    batches = [pixels[i : i + _BATCH] for i in range(0, len(pixels), _BATCH)]
    want, got = (
        np.concatenate([m.predict_arrays(b) for b in batches]) for m in (reference, candidate)
    )
    served = [
        reference.to_result(w)["prediction"] == candidate.to_result(g)["prediction"]
        for w, g in zip(want, got, strict=True)
    ]
    return {
        "max_abs_probability_diff": float(np.abs(want - got).max()),
        "argmax_agreement": float(np.mean(want.argmax(axis=1) == got.argmax(axis=1))),
        "prediction_agreement": float(np.mean(served)),
    }


def card_section(record: dict[str, Any], int8: dict[str, Any] | None = None) -> str:
    """``int8``: metadata.json's int8 decision, when the folder has an int8 file."""
    r, src, check = record, record["from"], record["verification"]
    f32 = f"`{r['file']}` ({r['bytes'] / 1e6:.1f} MB) with {r['runtime']}, in {r['precision']}"
    rows = [("served", r["file"], r["sha256"])]
    served = f"The API serves {f32}"
    if int8 is not None:
        stale = int8["source_sha256"] != r["sha256"]
        default = bool(int8["default"]) and not stale
        role = "served with `INFERENCE_PRECISION=int8`"
        role = "built from another `model.onnx`: not served" if stale else role
        role = "served by default" if default else role
        pin = "served with `INFERENCE_PRECISION=f32`" if default else "served"
        rows = [(role, int8["file"], int8["sha256"]), (pin, r["file"], r["sha256"])]
        if default:
            served = f"The API serves `{int8['file']}` by default (*int8 export*, below); "
            served += f"`INFERENCE_PRECISION=f32` serves {f32}"
    rows.append(("trained, exported from", src["file"], src["sha256"]))
    table = "".join(f"| `{name}` | {role} | `{sha}` |\n" for role, name, sha in rows)
    tail = (
        "No reduced-precision mode is offered: the served answers are the float32 model's.\n"
        if int8 is None
        else f"`{int8['file']}`'s answers against float32's: *int8 export*.\n"
    )
    return (
        f"{CARD_HEADING}\n\n{served}: `{src['file']}` exported through {r['exported_with']}, "
        f"opset {r['opset']}. The Keras file stays the reference (`INFERENCE_BACKEND=keras` "
        "serves it). Each file's sha256, as `GET /model` lists them (`files`; its `sha256` is "
        f"the served file's):\n\n| file | | sha256 |\n|---|---|---|\n{table}\n"
        f"`{r['file']}` checked against the Keras model on {check['images']} images "
        f"({check['source']}), both decoded and classified as the API does:\n\n"
        "| largest probability difference | tolerance | argmax agreement | served answers equal |\n"
        f"|---|---|---|---|\n| {check['max_abs_probability_diff']:.2e} | {check['tolerance']:g} "
        f"| {check['argmax_agreement']:.1%} | {check['prediction_agreement']:.1%} |\n\n{tail}"
    )
