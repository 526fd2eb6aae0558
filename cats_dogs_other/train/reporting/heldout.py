"""A finished run's splits, rebuilt from its metrics.json (which lists only the test files) and
the sources as the run made them; a rebuilt test split that differs means the sources changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from cats_dogs_other.train.errors import TrainingError
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
    for source in metrics.dataset.sources:
        dropped |= {(source.name, s["file"]) for s in source.skipped}
    rows: list[Row] = []
    strata: list[str] = []
    groups: list[str] = []
    for info, samples in list_sources(list(data), classes):
        for s in samples:
            if (info.name, s.name) not in dropped:
                rows.append((f"{info.name}/{s.name}", s.path, s.label))
                strata.append(info.name)
                groups.append(_group(info.name, s.name))
    parts = grouped_split(
        np.asarray([y for _, _, y in rows]),
        np.asarray(strata),
        groups,
        val_fraction=split.fractions["val"],
        calibration_fraction=split.fractions["calibration"],
        test_fraction=split.fractions["test"],
        seed=split.seed,
    )
    test = [rows[i] for i in parts.test]
    if sorted(n for n, _, _ in test) != sorted(split.test_files):
        raise TrainingError(
            f"the sources {', '.join(map(str, data))} no longer give the test split "
            f"{model_dir}/metrics.json records: pass the --data folders the run was trained on"
        )
    cal, val, train = ([rows[i] for i in ix] for ix in (parts.calibration, parts.val, parts.train))
    return HeldOut(classes, cal, test, val, train)


def _group(source: str, name: str) -> str:
    from cats_dogs_other.train.kinds import parse_wnid

    parsed = parse_wnid(Path(name).stem)
    return f"{source}:{parsed[0]}" if parsed else f"{source}:{name}"
