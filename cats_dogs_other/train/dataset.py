"""A labelled dataset (Ecotag export or one folder per class) as labelled files; sources.py
decodes them with ``kto.inference.decode_image``, the server's own decode."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from kto.inference.metadata import DEFAULT_CLASSES

from cats_dogs_other.train.errors import (
    ClassTooSmallError,
    DatasetError,
    MissingImagesError,
    UnknownLabelsError,
)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
ECOTAG_IMAGE_DIRS = ("extract", "images", ".")  # relative to the annotations file
Format = Literal["ecotag", "folders"]


class Sample(NamedTuple):
    path: Path
    name: str  # as the annotations give it (relative to the image folder)
    label: int


def find_samples(
    data: Path, classes: Sequence[str] = DEFAULT_CLASSES, *, every_class: bool = True
) -> tuple[list[Sample], Format]:
    """``every_class=False``: one of several sources (dogs and "other" need no cats if another
    source has them)."""
    data, classes = Path(data), tuple(classes)
    if not data.exists():
        raise DatasetError(f"dataset not found: {data} (pass --data DIR)")
    index = {name.casefold(): i for i, name in enumerate(classes)}
    annotations = _annotations_file(data)
    fmt: Format = "ecotag" if annotations else "folders"
    if annotations:
        samples = _ecotag_samples(annotations, classes, index)
    else:
        samples = _folder_samples(data, classes, index)
    if every_class:
        check_every_class_present(samples, classes)
    return samples, fmt


def dataset_sha256(samples: Sequence[Sample], classes: tuple[str, ...]) -> str:
    """Hash of (file name, label, file content) for every sample, independent of listing order."""
    outer = hashlib.sha256()
    for sample in sorted(samples, key=lambda s: s.name):
        content = hashlib.sha256(sample.path.read_bytes()).hexdigest()
        outer.update(f"{sample.name}\0{classes[sample.label]}\0{content}\n".encode())
    return outer.hexdigest()


def _annotations_file(data: Path) -> Path | None:
    if data.is_file():
        return data
    for candidate in sorted(data.glob("*.json")):
        try:
            doc = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("annotations"), list):
            return candidate
    return None


def _ecotag_samples(
    annotations: Path, classes: tuple[str, ...], index: dict[str, int]
) -> list[Sample]:
    try:
        entries = json.loads(annotations.read_text(encoding="utf-8"))["annotations"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{annotations} is not an Ecotag export: {exc}") from exc
    labelled = _ecotag_labels(entries, annotations)
    # the first conventional folder holding the most annotated files
    folders = [annotations.parent / d for d in ECOTAG_IMAGE_DIRS]
    image_dir = max(folders, key=lambda d: sum((d / n).is_file() for n in labelled))
    image_dir = image_dir if any((image_dir / n).is_file() for n in labelled) else folders[0]
    unknown: dict[str, list[str]] = defaultdict(list)
    missing = [n for n, label in labelled.items() if not (image_dir / n).is_file()]
    for name, label in labelled.items():
        if label.casefold() not in index:
            unknown[label].append(name)
    if unknown:
        raise UnknownLabelsError(dict(unknown), classes)
    if missing:
        raise MissingImagesError(sorted(missing), str(image_dir))
    return [Sample(image_dir / n, n, index[label.casefold()]) for n, label in labelled.items()]


def _ecotag_labels(entries: object, source: Path) -> dict[str, str]:
    if not isinstance(entries, list):
        raise DatasetError(f"{source}: 'annotations' must be a list")
    labels: dict[str, str] = {}
    for i, entry in enumerate(entries):
        try:
            name, label = entry["fileName"], entry["annotation"]["label"]
        except (KeyError, TypeError) as exc:
            raise DatasetError(
                f"{source}: annotation #{i} lacks fileName or annotation.label"
            ) from exc
        if not isinstance(name, str) or not isinstance(label, str) or Path(name).is_absolute():
            raise DatasetError(f"{source}: annotation #{i} has an invalid fileName or label")
        if labels.get(name, label).casefold() != label.casefold():
            raise DatasetError(f"{source}: {name} is labelled both {labels[name]!r} and {label!r}")
        labels[name] = label
    if not labels:
        raise DatasetError(f"{source}: the export has no annotations")
    return labels


def _folder_samples(data: Path, classes: tuple[str, ...], index: dict[str, int]) -> list[Sample]:
    unknown: dict[str, list[str]] = {}
    samples: list[Sample] = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [
            str(f.relative_to(data))
            for f in sorted(folder.rglob("*"))
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if folder.name.casefold() in index:
            samples += [Sample(data / f, f, index[folder.name.casefold()]) for f in files]
        elif files:
            unknown[folder.name] = files
    if unknown:
        raise UnknownLabelsError(unknown, classes)
    if not samples:
        raise DatasetError(
            f"{data} holds neither an Ecotag export (*.json with 'annotations') nor class "
            f"folders named {', '.join(classes)}"
        )
    return samples


def check_every_class_present(
    samples: Sequence[Sample], classes: tuple[str, ...], *, after_skipping: bool = False
) -> None:
    counts = Counter(s.label for s in samples)
    if empty := [name for i, name in enumerate(classes) if counts[i] == 0]:
        why = " once corrupt images are skipped" if after_skipping else ""
        raise ClassTooSmallError(
            f"class(es) {', '.join(empty)} have no usable images{why}; every class needs images "
            "to train a classifier"
        )
