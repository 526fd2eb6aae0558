"""The familiarity gate: an image unlike every training cat and dog is answered ``Other``.
On frozen ImageNet features the Dog region absorbs unseen objects (a paddle, a mixing bowl came
back Dog at 0.8-0.97), which lie far from every training pet, while an unseen dog breed lies near
some training dog. Costs one 1280 x k product in the model (<0.3% of the backbone for k = 512)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from cats_dogs_other.train.calibration import decide, macro_recall, sweep
from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.data import Data
from cats_dogs_other.train.heads import head_probs
from cats_dogs_other.train.network import SLOPE, FamiliarityGate, blend, unit_rows
from cats_dogs_other.train.results import FamiliarityReport
from cats_dogs_other.train.sources import Pool

__all__ = ["SLOPE", "FamiliarityGate", "blend", "choose_gate", "unit_rows"]

log = logging.getLogger(__name__)

CANDIDATES = tuple(round(float(t), 2) for t in np.arange(0.30, 0.71, 0.01))


def answer_probs(
    head: Any, gate: FamiliarityGate | None, features: dict[str, np.ndarray], idx: Any, tta: bool
) -> np.ndarray:
    """What the assembled model answers for ``idx``, from cached features."""
    probs = head_probs(head, features, idx, tta)
    return probs if gate is None else gate.apply(probs, features["clean"][idx])


def fit_prototypes(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` unit k-means centres: a fixed-size summary, the model does not grow with the data."""
    from sklearn.cluster import KMeans

    x = unit_rows(features)
    if len(x) <= k:
        return x
    return unit_rows(KMeans(k, n_init=1, random_state=seed).fit(x).cluster_centers_)


def pet_gate(pool: Pool, idx: np.ndarray, cfg: TrainConfig, threshold: float) -> FamiliarityGate:
    """A gate whose prototypes are the clean and mirrored features of the pets of ``idx``."""
    pets = idx[pool.labels[idx] != cfg.fallback]
    features = np.concatenate([pool.features[v][pets] for v in ("clean", "flip")])
    prototypes = fit_prototypes(features, cfg.gate_prototypes, cfg.seed)
    return FamiliarityGate(prototypes, threshold, cfg.fallback)


def choose_gate(
    probs: np.ndarray, similarity: np.ndarray, labels: np.ndarray, fallback: int, prototypes: int
) -> tuple[float | None, FamiliarityReport]:
    """The threshold maximising macro recall, the lowest of equals; kept on any strict gain (the
    gate costs no measurable latency, so the ``min_gain`` bar for costlier choices is not set)."""

    def score(t: float | None) -> float:
        gated = probs if t is None else blend(probs, similarity, t, fallback, SLOPE)
        return macro_recall(labels, decide(gated, None, fallback))

    return sweep(FamiliarityReport, score, CANDIDATES, None, n=len(labels), prototypes=prototypes)


def calibrate_gate(
    data: Data, head: Any, tta: bool
) -> tuple[FamiliarityGate | None, FamiliarityReport | None]:
    """Prototypes of the training split's pets; the threshold chosen on the validation and
    calibration splits together: neither was trained on, and the threshold trades held-out
    classes of Other against ImageNet-style dogs, of which each split alone has about six."""
    cfg, pool, split = data.cfg, data.pool, data.split
    if not cfg.familiarity_gate or not len(split.calibration):
        return None, None
    held = np.concatenate([split.val, split.calibration])
    probe = pet_gate(pool, split.train, cfg, 0.0)
    similarity = probe.similarity(pool.features["clean"][held])
    probs = head_probs(head, pool.features, held, tta)
    threshold, report = choose_gate(
        probs, similarity, pool.labels[held], cfg.fallback, len(probe.prototypes)
    )
    log.info("familiarity gate: %s", report)
    return (None if threshold is None else replace(probe, threshold=threshold)), report
