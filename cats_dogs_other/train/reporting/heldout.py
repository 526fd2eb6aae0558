"""A finished run's splits, rebuilt from its metrics.json (which lists only the test files) and
the sources as the run made them; a rebuilt test split that differs means the sources changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.kinds import parse_wnid
from cats_dogs_other.train.results import Metrics
from cats_dogs_other.train.sources import list_sources
from cats_dogs_other.train.split import grouped_split

Row = tuple[str, Path, int]  # (``source/name`` as metrics.json writes it, path, class index)


@dataclass(frozen=True)
class HeldOut:
    classes: tuple[str, ...]
    calibration: list[Row]
    test: list[Row]
    val: list[Row]
    train: list[Row]


def read_metrics(model_dir: Path) -> Metrics:
    if not (Path(model_dir) / "metrics.json").is_file():
        raise TrainingError(f"{model_dir} has no metrics.json: it is not a trained model folder")
    try:
        return Metrics.read(model_dir)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise TrainingError(f"{model_dir}/metrics.json: {where}: {first['msg']}") from exc


def classes_of(metrics: Metrics) -> tuple[str, ...]:
    return tuple(metrics.test.all.confusion_matrix.labels)


def rebuild_held_out(model_dir: Path, data: Sequence[Path]) -> HeldOut:
    metrics = read_metrics(model_dir)
    classes, split = classes_of(metrics), metrics.split
    dropped = {(d.source, d.file) for d in metrics.dataset.duplicates}
    dropped |= {(s.name, skip["file"]) for s in metrics.dataset.sources for skip in s.skipped}
    kept = [
        (info.name, s)
        for info, samples in list_sources(list(data), classes)
        for s in samples
        if (info.name, s.name) not in dropped
    ]
    wnids = [parse_wnid(Path(s.name).stem) for _, s in kept]
    parts = grouped_split(
        np.asarray([s.label for _, s in kept]),
        np.asarray([source for source, _ in kept]),
        [f"{source}:{w[0] if w else s.name}" for (source, s), w in zip(kept, wnids, strict=True)],
        val_fraction=split.fractions["val"],
        calibration_fraction=split.fractions["calibration"],
        test_fraction=split.fractions["test"],
        seed=split.seed,
    )
    rows: list[Row] = [(f"{source}/{s.name}", s.path, s.label) for source, s in kept]
    cal, test, val, train = (
        [rows[i] for i in ix] for ix in (parts.calibration, parts.test, parts.val, parts.train)
    )
    if sorted(n for n, _, _ in test) != sorted(split.test_files):
        raise TrainingError(
            f"the sources {', '.join(map(str, data))} no longer give the test split "
            f"{model_dir}/metrics.json records: pass the --data folders the run was trained on"
        )
    return HeldOut(classes, cal, test, val, train)
