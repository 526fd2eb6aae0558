"""Choosing the head on the validation split, training it again on every non-test image, and
cross-validating that recipe on one source."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np

from cats_dogs_other.train.calibration import decide, macro_recall
from cats_dogs_other.train.config import Weighting
from cats_dogs_other.train.data import Data
from cats_dogs_other.train.familiarity import answer_probs, pet_gate
from cats_dogs_other.train.heads import NONE, HeadChoice, History, fit_head, head_probs
from cats_dogs_other.train.results import Candidate, CrossValidation, SelectionReport
from cats_dogs_other.train.split import stratified_folds
from cats_dogs_other.train.stats import proportion

log = logging.getLogger(__name__)

REFIT_PREFIX = "refit_"
"""History keys of the final training on every non-test image."""


@dataclass
class Selection:
    choice: HeadChoice
    tta: bool
    head: Any
    history: History
    report: SelectionReport
    refit_epochs: int | None = None

    def best_epochs(self, default: int) -> int:
        """Epochs early stopping kept on the validation split (``default`` without one)."""
        val_loss = self.history.get("val_loss")
        return int(np.argmin(val_loss)) + 1 if val_loss else default


def select_head(data: Data) -> Selection:
    """Every (head shape, weighting) trained on the training split and scored, with and without
    the mirror pass, by macro recall over the classes of the validation split."""
    cfg, pool, split = data.cfg, data.pool, data.split
    candidates: list[Candidate] = []
    heads: dict[HeadChoice, tuple[Any, History]] = {}
    labels, val = pool.labels[split.val], split.val
    for hidden, weighting in product(cfg.hidden_candidates, cfg.weighting_candidates):
        choice = HeadChoice(hidden, weighting)
        head, history = fit_head(pool, split.train, val, cfg, choice, f"head: {choice.label}")
        heads[choice], epochs = (head, history), len(history.get("loss", []))
        for tta in cfg.tta_candidates:
            pred = decide(head_probs(head, pool.features, val, tta), None, 0)
            recall = round(macro_recall(labels, pred), 4) if len(val) else 0.0
            accuracy = round(float(np.mean(pred == labels)), 4) if len(val) else None
            candidates.append(Candidate(hidden, weighting, tta, recall, accuracy, epochs))
    simplest = preferred(candidates, cfg.min_gain, cfg.weighting_candidates)
    simplest.chosen = True
    choice = HeadChoice(simplest.hidden, simplest.weighting)
    reason = (
        f"best validation macro recall {max(c.val_macro_recall for c in candidates):.4f}; the "
        f"simplest candidate within {cfg.min_gain} of it is {choice.label}, mirror pass "
        f"{'on' if simplest.tta else 'off'} ({simplest.val_macro_recall:.4f})"
    )
    log.info("head selection: %s", reason)
    return Selection(choice, simplest.tta, *heads[choice], SelectionReport(candidates, reason))


def preferred(
    candidates: list[Candidate], min_gain: float, weightings: tuple[Weighting, ...]
) -> Candidate:
    """The simplest candidate within ``min_gain`` of the best: the gain must pay for a bigger
    head (linear before MLP) or a second pass; weighting costs nothing when serving, so its
    order in ``weightings`` alone decides."""
    best = max(c.val_macro_recall for c in candidates)
    return min(
        (c for c in candidates if c.val_macro_recall >= best - min_gain),
        key=lambda c: (c.hidden > 0, c.tta, weightings.index(c.weighting)),
    )


def refit(data: Data, selection: Selection) -> Selection:
    """The chosen head again, on training + validation + calibration images, for the epochs
    early stopping picked: more ImageNet classes seen as "Other" is what generalises to unseen
    ones. Choices already made stay; the test split is still untouched."""
    cfg, pool, split = data.cfg, data.pool, data.split
    if not cfg.refit or not selection.history.get("val_loss"):
        return selection
    fixed = replace(cfg, epochs=selection.best_epochs(cfg.epochs))
    everything = np.concatenate([split.train, split.val, split.calibration])
    desc = "final head (train + val + calibration)"
    head, history = fit_head(pool, everything, NONE, fixed, selection.choice, desc)
    history = selection.history | {f"{REFIT_PREFIX}{k}": v for k, v in history.items()}
    return replace(selection, head=head, history=history, refit_epochs=fixed.epochs)


def cross_validate(
    data: Data, selection: Selection, threshold: float | None, gate_threshold: float | None
) -> CrossValidation | None:
    """Stratified k-fold over ``cfg.cv_source`` (default: the first source). Each fold trains the
    chosen head for the chosen epochs on its training part plus the other sources' non-test
    images, then answers its held-out part as the final model would (mirror pass, a gate of the
    fold's own training pets, rule)."""
    cfg, pool, split = data.cfg, data.pool, data.split
    if not cfg.cv_folds:
        return None
    source = cfg.cv_source or pool.source_names[0]
    cv_idx = np.flatnonzero(pool.sources == source)
    extra_train = np.setdiff1d(np.flatnonzero(pool.sources != source), split.test)
    log.info("%d-fold cross-validation on %s (%d images)", cfg.cv_folds, source, len(cv_idx))
    labels = pool.labels
    folds = stratified_folds(labels[cv_idx], cfg.cv_folds, seed=cfg.seed, class_names=cfg.classes)
    fixed = replace(cfg, epochs=selection.best_epochs(cfg.epochs))
    accuracies, hits, truth = [], [], []
    for k, (train_part, held_part) in enumerate(folds):
        tr, held = np.concatenate([cv_idx[train_part], extra_train]), cv_idx[held_part]
        head, _ = fit_head(pool, tr, NONE, fixed, selection.choice, f"CV fold {k + 1}")
        gate = None if gate_threshold is None else pet_gate(pool, tr, cfg, gate_threshold)
        probs = answer_probs(head, gate, pool.features, held, selection.tta)
        truth.append(labels[held])
        hits.append(decide(probs, threshold, cfg.fallback) == truth[-1])
        accuracies.append(float(hits[-1].mean()))
    hit, true = np.concatenate(hits), np.concatenate(truth)
    return CrossValidation(
        source=str(source),
        folds=cfg.cv_folds,
        seed=cfg.seed,
        accuracy_mean=round(float(np.mean(accuracies)), 4),
        accuracy_std=round(float(np.std(accuracies)), 4),
        fold_accuracies=[round(a, 4) for a in accuracies],
        pooled=proportion(int(hit.sum()), len(hit)),
        per_class_recall={
            c: proportion(int(hit[true == i].sum()), int(np.sum(true == i)))
            for i, c in enumerate(cfg.classes)
        },
    )
