"""Out-of-distribution images, answered by the saved model: the share sent to "Other", per
category. None of them is used for any choice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.calibration import decide
from cats_dogs_other.train.dataset import IMAGE_SUFFIXES
from cats_dogs_other.train.features import predict_batches
from cats_dogs_other.train.paths import OOD_MANIFEST as MANIFEST
from cats_dogs_other.train.results import Miss, OODReport
from cats_dogs_other.train.stats import proportion

IN_DISTRIBUTION_DIR = "in_distribution"


@dataclass
class OODSet:
    images: np.ndarray
    names: list[str]
    categories: list[str]
    sha256: str


def set_hash(directory: Path, files: Iterable[str]) -> str:
    """sha256 over (name, content sha256) of ``files``: names the measured set in metrics.json."""
    digest = hashlib.sha256()
    for name in sorted(files):
        content = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        digest.update(f"{name}\0{content}\n".encode())
    return digest.hexdigest()


def _entries(directory: Path) -> list[dict[str, Any]]:
    """The manifest's images; a folder gathered by hand has none, and its files' categories are
    their name prefixes (``food__x.png``)."""
    if (directory / MANIFEST).is_file():
        return list(json.loads((directory / MANIFEST).read_text("utf-8"))["images"])
    return [
        {"file": p.name, "category": p.name.split("__")[0] if "__" in p.name else "unknown"}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]


def load_ood(directory: Path, size: tuple[int, int]) -> OODSet:
    from kto.inference import decode_image

    directory = Path(directory)
    if not (entries := _entries(directory)):
        raise FileNotFoundError(f"no out-of-distribution images in {directory}")
    names = [e["file"] for e in entries]
    images = np.stack([decode_image(directory / n, size=size) for n in names])
    return OODSet(images, names, [e["category"] for e in entries], set_hash(directory, names))


def measure_ood(
    directory: Path, model: Any, classes: tuple[str, ...], threshold: float | None, fallback: int
) -> OODReport:
    """How many of the pictures the saved model (with its rule) answers ``classes[fallback]``."""
    side = model.input_shape[1:3]
    ood = load_ood(directory, (int(side[0]), int(side[1])))
    pred = decide(predict_batches(model, ood.images), threshold, fallback)
    cats = np.asarray(ood.categories)
    sent = pred == fallback
    return OODReport(
        sha256=ood.sha256,
        all=proportion(int(np.sum(sent)), len(pred)),
        per_category={
            c: proportion(int(np.sum(sent[cats == c])), int(np.sum(cats == c)))
            for c in sorted(set(ood.categories))
        },
        not_other=[
            Miss(file=n, prediction=classes[int(p)])
            for n, p in zip(ood.names, pred, strict=True)
            if p != fallback
        ],
    )
