"""Seeded splits: the same seed and labels always give the same indices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cats_dogs_other.train.errors import ClassTooSmallError


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    calibration: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def sizes(self) -> dict[str, int]:
        sizes = {"train": len(self.train), "val": len(self.val), "test": len(self.test)}
        return sizes | ({"calibration": len(self.calibration)} if len(self.calibration) else {})


def stratified_folds(
    labels: np.ndarray, n_folds: int, *, seed: int = 42, class_names: Sequence[str] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index pairs for stratified k-fold cross-validation."""
    from sklearn.model_selection import StratifiedKFold

    if n_folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    for cls, n in zip(*np.unique(labels, return_counts=True), strict=True):
        if n < n_folds:
            name = class_names[int(cls)] if class_names else str(cls)
            raise ClassTooSmallError(
                f"class {name!r} has {n} image(s): too few for {n_folds}-fold cross-validation "
                f"(each fold needs one); add images or lower --folds"
            )
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in folds.split(np.zeros(len(labels)), labels)]


def grouped_split(
    labels: np.ndarray,
    strata: np.ndarray,
    groups: Sequence[str],
    *,
    val_fraction: float,
    calibration_fraction: float,
    test_fraction: float,
    seed: int = 42,
) -> Split:
    """Per stratum (source x class), whole groups (an ImageNet class, or one image) go to test,
    calibration, validation, train: a held-out ImageNet class has no picture in training. A part
    gets ``n * fraction`` groups rounded half up, at least one; a stratum too small for every part
    stays in training rather than failing the run."""
    fractions = (test_fraction, calibration_fraction, val_fraction)
    if min(fractions) < 0 or sum(fractions) >= 1:
        raise ValueError("val, calibration and test fractions must be >= 0 and add up to < 1")
    labels, strata, group_arr = np.asarray(labels), np.asarray(strata), np.asarray(groups)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"test": [], "calibration": [], "val": [], "train": []}
    for stratum, cls in sorted({(str(s), int(c)) for s, c in zip(strata, labels, strict=True)}):
        members = np.flatnonzero((strata == stratum) & (labels == cls))
        unique = rng.permutation(np.unique(group_arr[members]))
        wanted = [0 if f <= 0 else max(1, int(np.floor(len(unique) * f + 0.5))) for f in fractions]
        if sum(wanted) >= len(unique):
            wanted = [0, 0, 0]
        bounds = [*np.cumsum([0, *wanted]), len(unique)]
        for part, lo, hi in zip(parts.values(), bounds[:-1], bounds[1:], strict=True):
            part.append(members[np.isin(group_arr[members], unique[lo:hi])])
    return Split(**{k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()})
