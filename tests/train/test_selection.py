"""The head's choice, its refit and the cross-validation of its recipe, on a real small pool
(generated coloured images, mean-colour features) with real Keras heads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.data import Data
from cats_dogs_other.train.familiarity import calibrate_gate, pet_gate
from cats_dogs_other.train.selection import (
    REFIT_PREFIX,
    Selection,
    cross_validate,
    refit,
    select_head,
)
from cats_dogs_other.train.sources import Pool
from cats_dogs_other.train.split import Split, grouped_split

from .conftest import pool_of, write_ecotag, write_folders


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("selection")


@pytest.fixture(scope="module")
def pool(root: Path) -> Pool:
    course = write_ecotag(root / "course", per_class=12)
    return pool_of(root, course, write_folders(root / "other", per_class=9, seed=1))


@pytest.fixture(scope="module")
def cfg(root: Path) -> TrainConfig:
    base = TrainConfig(data=root, out=root / "out", progress=False, cv_folds=3)
    return replace(
        base,
        epochs=30,
        patience=30,
        learning_rate=0.05,
        hidden_candidates=(0,),
        gate_prototypes=4,
        weighting_candidates=("none", "class"),
    )


@pytest.fixture(scope="module")
def split(pool: Pool, cfg: TrainConfig) -> Split:
    fractions = {"val_fraction": 0.2, "calibration_fraction": 0.2, "test_fraction": 0.2}
    return grouped_split(pool.labels, pool.sources, pool.groups, seed=cfg.seed, **fractions)


@pytest.fixture(scope="module")
def data(pool: Pool, split: Split, cfg: TrainConfig) -> Data:
    return Data(cfg, pool, split)


@pytest.fixture(scope="module")
def selection(data: Data) -> Selection:
    return select_head(data)


def test_every_candidate_is_scored_and_the_chosen_one_is_the_selection(
    selection: Selection, cfg: TrainConfig
) -> None:
    rows = selection.report.candidates
    assert [(c.weighting, c.tta) for c in rows] == [
        ("none", False),
        ("none", True),
        ("class", False),
        ("class", True),
    ]
    (chosen,) = [c for c in rows if c.chosen]
    assert (chosen.hidden, chosen.weighting, chosen.tta) == (
        0,
        selection.choice.weighting,
        selection.tta,
    )
    assert (
        chosen.val_macro_recall == max(c.val_macro_recall for c in rows) == 1.0
    )  # separable colours
    assert not chosen.tta  # the mirror pass gains nothing here, so the cheaper answer wins
    assert 1 <= selection.best_epochs(cfg.epochs) <= cfg.epochs


def test_refit_trains_on_every_non_test_image_for_the_chosen_epochs(
    data: Data, cfg: TrainConfig, selection: Selection
) -> None:
    refitted = refit(data, selection)
    assert refitted.refit_epochs == selection.best_epochs(cfg.epochs)
    assert len(refitted.history[f"{REFIT_PREFIX}loss"]) == refitted.refit_epochs
    assert refitted.head is not selection.head and refitted.choice == selection.choice
    assert refit(replace(data, cfg=replace(cfg, refit=False)), selection) is selection


def test_cross_validation_answers_every_image_of_its_source_once(
    data: Data, pool: Pool, cfg: TrainConfig, selection: Selection
) -> None:
    cv = cross_validate(data, selection, None, None)
    assert cv is not None and cv.source == "course" and cv.folds == 3
    assert cv.pooled.n == int(np.sum(pool.sources == "course")) == 36
    assert sum(p.n for p in cv.per_class_recall.values()) == 36
    assert len(cv.fold_accuracies) == 3 and cv.pooled.k >= 33
    gated = cross_validate(data, selection, 0.99, 0.5)  # every answer under rule/gate
    assert gated is not None and gated.pooled.n == 36
    assert (
        cross_validate(replace(data, cfg=replace(cfg, cv_folds=0)), selection, None, None) is None
    )


def test_the_gate_is_chosen_on_held_out_images_with_prototypes_of_training_pets(
    data: Data, pool: Pool, split: Split, cfg: TrainConfig, selection: Selection
) -> None:
    gate, report = calibrate_gate(data, selection.head, selection.tta)
    assert report is not None and report.n == len(split.val) + len(split.calibration)
    assert report.prototypes == 4 and (gate is None) == (report.chosen is None)
    assert report.macro_recall_without == 1.0 and gate is None  # nothing to gain: no gate
    probe = pet_gate(pool, split.train, cfg, 0.5)
    assert probe.prototypes.shape == (4, pool.features["clean"].shape[1])
    np.testing.assert_allclose(np.linalg.norm(probe.prototypes, axis=1), 1.0, atol=1e-5)
    ungated = replace(data, cfg=replace(cfg, familiarity_gate=False))
    assert calibrate_gate(ungated, None, False) == (None, None)
