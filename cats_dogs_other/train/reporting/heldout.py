"""The held-out files of a finished run, rebuilt from its ``metrics.json`` and the sources.

metrics.json lists the test files; the calibration split is not listed, so it is rebuilt the
way the run made it: every source listed in ``--data`` order, less the files the run skipped or
dropped as duplicates (both recorded), split by :func:`grouped_split` with the recorded seed and
fractions. The rebuilt test split must equal the recorded one file for file, else the sources
changed since the run and nothing is reported from them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.sources import list_sources
from cats_dogs_other.train.split import grouped_split


@dataclass(frozen=True)
class HeldOut:
    """Files and true labels (class indices) of a run's splits."""

    classes: tuple[str, ...]
    calibration: list[tuple[str, Path, int]]
    """(``source/name`` as metrics.json writes it, path, label)."""
    test: list[tuple[str, Path, int]]
    val: list[tuple[str, Path, int]] = field(default_factory=list)
    train: list[tuple[str, Path, int]] = field(default_factory=list)


def read_metrics(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "metrics.json"
    if not path.is_file():
        raise TrainingError(f"{model_dir} has no metrics.json: it is not a trained model folder")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def rebuild_held_out(model_dir: Path, data: Sequence[Path]) -> HeldOut:
    """The run's calibration and test files; raises when the sources no longer match."""
    metrics = read_metrics(model_dir)
    classes = tuple(metrics["model"].get("classes") or ("Cat", "Dog", "Other"))
    dataset, split = metrics["dataset"], metrics["split"]
    dropped = {(d["source"], d["file"]) for d in dataset.get("duplicates", [])}
    for source in dataset["sources"]:
        dropped |= {(source["name"], s["file"]) for s in source.get("skipped", [])}
    names: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    strata: list[str] = []
    groups: list[str] = []
    for info, samples in list_sources(list(data), classes):
        for sample in samples:
            if (info.name, sample.name) in dropped:
                continue
            names.append(f"{info.name}/{sample.name}")
            paths.append(sample.path)
            labels.append(sample.label)
            strata.append(info.name)
            groups.append(_group(info.name, sample.name))
    fractions = split["fractions"]
    parts = grouped_split(
        np.asarray(labels),
        np.asarray(strata),
        groups,
        val_fraction=fractions["val"],
        calibration_fraction=fractions["calibration"],
        test_fraction=fractions["test"],
        seed=split["seed"],
    )
    rows = list(zip(names, paths, labels, strict=True))
    test = [rows[i] for i in parts.test]
    if sorted(n for n, _, _ in test) != sorted(split.get("test_files", [])):
        raise TrainingError(
            f"the sources {', '.join(map(str, data))} no longer give the test split "
            f"{model_dir}/metrics.json records: pass the --data folders the run was trained on"
        )
    return HeldOut(
        classes,
        [rows[i] for i in parts.calibration],
        test,
        val=[rows[i] for i in parts.val],
        train=[rows[i] for i in parts.train],
    )


def _group(source: str, name: str) -> str:
    from cats_dogs_other.train.kinds import parse_wnid

    parsed = parse_wnid(Path(name).stem)
    return f"{source}:{parsed[0]}" if parsed else f"{source}:{name}"
