"""Choosing the head on the validation split, then training it again on every non-test image.

Every (head shape, weighting) is trained on the training split and scored, with and without
the mirror pass, by macro recall over the classes of the VALIDATION split. The simplest
candidate within ``min_gain`` of the best wins (linear before MLP, no mirror pass before
mirror pass, then the weightings in ``weighting_candidates`` order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cats_dogs_other.train.calibration import decide, macro_recall
from cats_dogs_other.train.config import TrainConfig, Weighting
from cats_dogs_other.train.heads import HeadChoice, History, fit_head, head_probs
from cats_dogs_other.train.results import Candidate, SelectionReport
from cats_dogs_other.train.sources import Pool
from cats_dogs_other.train.split import Split

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


def select_head(pool: Pool, split: Split, cfg: TrainConfig) -> Selection:
    candidates: list[Candidate] = []
    heads: dict[HeadChoice, tuple[Any, History]] = {}
    for hidden in cfg.hidden_candidates:
        for weighting in cfg.weighting_candidates:
            choice = HeadChoice(hidden, weighting)
            heads[choice] = fit_head(
                pool.features,
                pool.labels,
                pool.sources,
                split.train,
                split.val,
                cfg,
                choice,
                desc=f"head: {choice.label}",
            )
            candidates += _score(pool, split.val, cfg, choice, *heads[choice])
    best = max(c.val_macro_recall for c in candidates)
    simplest = preferred(candidates, cfg.min_gain, cfg.weighting_candidates)
    simplest.chosen = True
    choice = HeadChoice(simplest.hidden, simplest.weighting)
    reason = (
        f"best validation macro recall {best:.4f}; the simplest candidate within {cfg.min_gain} "
        f"of it is {choice.label}, mirror pass {'on' if simplest.tta else 'off'} "
        f"({simplest.val_macro_recall:.4f})"
    )
    log.info("head selection: %s", reason)
    head, history = heads[choice]
    return Selection(choice, simplest.tta, head, history, SelectionReport(candidates, reason))


def preferred(
    candidates: list[Candidate], min_gain: float, weightings: tuple[Weighting, ...]
) -> Candidate:
    """The simplest candidate within ``min_gain`` of the best: the gain must pay for a bigger
    head or a second pass; weighting costs nothing at serving time, so ``weightings``' order
    alone decides between weightings."""
    best = max(c.val_macro_recall for c in candidates)
    return min(
        (c for c in candidates if c.val_macro_recall >= best - min_gain),
        key=lambda c: (c.hidden > 0, c.tta, weightings.index(c.weighting)),
    )


def _score(
    pool: Pool,
    val: np.ndarray,
    cfg: TrainConfig,
    choice: HeadChoice,
    head: Any,
    history: History,
) -> list[Candidate]:
    """The head with and without the mirror pass, on the validation split."""
    rows = []
    for tta in cfg.tta_candidates:
        pred = decide(head_probs(head, pool.features, val, tta), None, 0)
        rows.append(
            Candidate(
                hidden=choice.hidden,
                weighting=choice.weighting,
                tta=tta,
                val_macro_recall=round(macro_recall(pool.labels[val], pred), 4)
                if len(val)
                else 0.0,
                val_accuracy=round(float(np.mean(pred == pool.labels[val])), 4)
                if len(val)
                else None,
                epochs=len(history.get("loss", [])),
            )
        )
    return rows


def refit(pool: Pool, split: Split, cfg: TrainConfig, selection: Selection) -> Selection:
    """The chosen head again, on training + validation + calibration images, for the number of
    epochs early stopping picked: more ImageNet classes seen as "Other" is what generalises to
    unseen ones. Choices already made stay; the test split is still untouched."""
    if not cfg.refit or not selection.history.get("val_loss"):
        return selection
    best_epochs = selection.best_epochs(cfg.epochs)
    everything = np.concatenate([split.train, split.val, split.calibration])
    head, history = fit_head(
        pool.features,
        pool.labels,
        pool.sources,
        everything,
        np.zeros(0, np.int64),
        replace(cfg, epochs=best_epochs),
        selection.choice,
        desc="final head (train + val + calibration)",
    )
    history = {f"{REFIT_PREFIX}{k}": v for k, v in history.items()}
    return replace(
        selection, head=head, history=selection.history | history, refit_epochs=best_epochs
    )
