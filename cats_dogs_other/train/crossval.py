"""Stratified k-fold cross-validation of the final recipe on one source (the first ``--data``).

Each fold trains the chosen head for fixed epochs on the fold's training part plus the other
sources' non-test images, then answers the held-out fold with the chosen mirror pass, the
familiarity gate (prototypes of the fold's own training pets) and the rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from cats_dogs_other.train.calibration import decide
from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.familiarity import FamiliarityGate, answer_probs, fold_gate
from cats_dogs_other.train.heads import HeadChoice, fit_head
from cats_dogs_other.train.results import CrossValidation
from cats_dogs_other.train.selection import Selection
from cats_dogs_other.train.sources import Pool
from cats_dogs_other.train.split import Split, stratified_folds
from cats_dogs_other.train.stats import proportion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """What each fold reproduces of the final model."""

    choice: HeadChoice
    tta: bool
    threshold: float | None
    epochs: int
    gate_threshold: float | None = None


@dataclass
class CVResult:
    source: str
    folds: int
    accuracies: list[float]
    correct: int
    n: int
    per_class_correct: dict[str, list[int]]

    def summary(self, seed: int) -> CrossValidation:
        acc = np.asarray(self.accuracies)
        return CrossValidation(
            source=self.source,
            folds=self.folds,
            seed=seed,
            accuracy_mean=round(float(acc.mean()), 4),
            accuracy_std=round(float(acc.std()), 4),
            fold_accuracies=[round(float(a), 4) for a in acc],
            pooled=proportion(self.correct, self.n),
            per_class_recall={c: proportion(k, n) for c, (k, n) in self.per_class_correct.items()},
        )


def cross_validate_source(
    pool: Pool,
    split: Split,
    cfg: TrainConfig,
    selection: Selection,
    threshold: float | None,
    gate: FamiliarityGate | None = None,
) -> CrossValidation | None:
    """``cfg.cv_source`` (default: the first source) cross-validated; the other sources' test
    images stay out of every fold."""
    if not cfg.cv_folds:
        return None
    source = cfg.cv_source or pool.source_names[0]
    cv_idx = np.flatnonzero(pool.sources == source)
    not_test = np.setdiff1d(np.arange(len(pool)), split.test)
    extra_train = np.intersect1d(not_test, np.flatnonzero(pool.sources != source))
    log.info("%d-fold cross-validation on %s (%d images)", cfg.cv_folds, source, len(cv_idx))
    recipe = Recipe(
        selection.choice,
        selection.tta,
        threshold,
        selection.best_epochs(cfg.epochs),
        None if gate is None else gate.threshold,
    )
    return cross_validate(pool, cv_idx, extra_train, cfg, recipe).summary(cfg.seed)


def cross_validate(
    pool: Pool, cv_idx: np.ndarray, extra_train: np.ndarray, cfg: TrainConfig, recipe: Recipe
) -> CVResult:
    """Stratified k-fold over ``cv_idx``, each fold trained with ``extra_train`` added."""
    features, labels = pool.features, pool.labels
    folds = stratified_folds(labels[cv_idx], cfg.cv_folds, seed=cfg.seed, class_names=cfg.classes)
    result = CVResult(
        str(pool.sources[cv_idx[0]]),
        cfg.cv_folds,
        [],
        0,
        len(cv_idx),
        {c: [0, 0] for c in cfg.classes},
    )
    fixed = replace(cfg, epochs=recipe.epochs)
    none = np.zeros(0, np.int64)
    for k, (train_part, held_part) in enumerate(folds):
        tr = np.concatenate([cv_idx[train_part], extra_train])
        head, _ = fit_head(
            features, labels, pool.sources, tr, none, fixed, recipe.choice, desc=f"CV fold {k + 1}"
        )
        held = cv_idx[held_part]
        gate = fold_gate(pool, tr, cfg, recipe.gate_threshold)
        probs = answer_probs(head, gate, features, held, recipe.tta)
        pred = decide(probs, recipe.threshold, cfg.fallback)
        hits = pred == labels[held]
        result.accuracies.append(float(hits.mean()))
        result.correct += int(hits.sum())
        for i, c in enumerate(cfg.classes):
            result.per_class_correct[c][0] += int(hits[labels[held] == i].sum())
            result.per_class_correct[c][1] += int((labels[held] == i).sum())
    return result
