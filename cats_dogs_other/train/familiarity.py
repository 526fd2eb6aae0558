"""The familiarity gate: an image unlike every training cat and dog is answered ``Other``.

A softmax head must put every image somewhere among Cat, Dog and Other, and on frozen ImageNet
features the broad Dog region absorbs objects it has never seen (a paddle, a pay-phone, a mixing
bowl came back Dog at 0.8-0.97). Those images are far from every training pet in feature space,
while a dog of an unseen breed is close to some training dog. The gate measures that distance:
the largest cosine similarity between the image's features and ``k`` prototypes (k-means centres
of the training pets' features), and moves the answer to the fallback class below a threshold
chosen on the validation and calibration splits.

It is built into the saved model from standard layers (no custom or Lambda layer, so the Keras
file loads anywhere and the ONNX export has no custom op), and costs one 1280 x k matrix
product: under 0.3% of the backbone's work for k = 512. The output stays a distribution:
``m * p + (1 - m) * onehot(fallback)`` with ``m = sigmoid(slope * (similarity - threshold))``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cats_dogs_other.train.calibration import decide, macro_recall
from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.heads import head_probs
from cats_dogs_other.train.results import FamiliarityReport
from cats_dogs_other.train.selection import Selection
from cats_dogs_other.train.sources import Pool
from cats_dogs_other.train.split import Split

log = logging.getLogger(__name__)

SLOPE = 100.0
"""Steepness of the step: ``m`` goes from 0.12 to 0.88 within +-0.02 of the threshold, and the
largest ONNX-vs-Keras similarity difference (~1e-6) moves a probability by under 1e-4."""
CANDIDATES = tuple(round(float(t), 2) for t in np.arange(0.30, 0.71, 0.01))


@dataclass(frozen=True)
class FamiliarityGate:
    prototypes: np.ndarray
    """(k, d) unit vectors."""
    threshold: float
    fallback: int
    slope: float = SLOPE

    def similarity(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(unit_rows(features) @ self.prototypes.T).max(axis=1)

    def apply(self, probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        """What the assembled model outputs, from the head's probabilities and the features."""
        return blend(probs, self.similarity(features), self.threshold, self.fallback, self.slope)


def answer_probs(
    head: Any,
    gate: FamiliarityGate | None,
    features: dict[str, np.ndarray],
    idx: np.ndarray,
    tta: bool,
) -> np.ndarray:
    """What the assembled model answers for ``idx``, from cached features."""
    probs = head_probs(head, features, idx, tta)
    return probs if gate is None else gate.apply(probs, features["clean"][idx])


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def blend(
    probs: np.ndarray, similarity: np.ndarray, threshold: float, fallback: int, slope: float
) -> np.ndarray:
    m = 1.0 / (1.0 + np.exp(np.clip(-slope * (similarity - threshold), -60.0, 60.0)))
    onehot = np.zeros(probs.shape[1], np.float32)
    onehot[fallback] = 1.0
    return (m[:, None] * probs + (1.0 - m)[:, None] * onehot).astype(np.float32)


def fit_prototypes(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` unit-length k-means centres of the (unit-length) pet features: a fixed-size
    summary, so the model file does not grow with the training set."""
    from sklearn.cluster import KMeans

    x = unit_rows(features)
    if len(x) <= k:
        return x
    centres = KMeans(k, n_init=1, random_state=seed).fit(x).cluster_centers_
    return unit_rows(centres)


def pet_features(
    features: dict[str, np.ndarray], labels: np.ndarray, idx: np.ndarray, fallback: int
) -> np.ndarray:
    """Clean and mirrored features of the non-fallback (cat and dog) images of ``idx``."""
    pets = idx[labels[idx] != fallback]
    return np.concatenate([features[v][pets] for v in ("clean", "flip")])


def choose_gate(
    probs: np.ndarray,
    similarity: np.ndarray,
    labels: np.ndarray,
    fallback: int,
    prototypes: int,
) -> tuple[float | None, FamiliarityReport]:
    """The threshold maximising macro recall on the calibration split; the lowest of equals.

    Kept when it beats no gate at all (a strict gain): the gate costs no measurable latency, so
    the ``min_gain`` bar for costlier choices does not apply.
    """
    base = macro_recall(labels, decide(probs, None, fallback))

    def score(t: float) -> float:
        return macro_recall(
            labels, decide(blend(probs, similarity, t, fallback, SLOPE), None, fallback)
        )

    scored = [(score(t), t) for t in CANDIDATES]
    best_score, best_t = max(scored, key=lambda st: (st[0], -st[1]))
    chosen = best_t if best_score > base else None
    return chosen, FamiliarityReport(
        macro_recall_without=round(base, 4),
        best_threshold=best_t,
        macro_recall_with_best=round(best_score, 4),
        chosen=chosen,
        n=len(labels),
        prototypes=prototypes,
    )


def calibrate_gate(
    pool: Pool, split: Split, cfg: TrainConfig, selection: Selection
) -> tuple[FamiliarityGate | None, FamiliarityReport | None]:
    """Prototypes of the training split's pets; the threshold chosen on the validation and
    calibration splits together: neither was trained on, and the threshold trades held-out
    classes of Other against ImageNet-style dogs, of which each split alone has about six."""
    cal = np.concatenate([split.val, split.calibration])
    if not cfg.familiarity_gate or not len(split.calibration):
        return None, None
    pets = pet_features(pool.features, pool.labels, split.train, cfg.fallback)
    probe = FamiliarityGate(fit_prototypes(pets, cfg.gate_prototypes, cfg.seed), 0.0, cfg.fallback)
    similarity = probe.similarity(pool.features["clean"][cal])
    probs = head_probs(selection.head, pool.features, cal, selection.tta)
    threshold, report = choose_gate(
        probs, similarity, pool.labels[cal], cfg.fallback, len(probe.prototypes)
    )
    gate = None if threshold is None else replace(probe, threshold=threshold)
    log.info("familiarity gate: %s", report)
    return gate, report


def refit_gate(
    pool: Pool, split: Split, cfg: TrainConfig, selection: Selection, gate: FamiliarityGate | None
) -> FamiliarityGate | None:
    """With the refitted head, prototypes of every pet it was trained on (threshold kept)."""
    if gate is None or selection.refit_epochs is None:
        return gate
    seen = np.concatenate([split.train, split.val, split.calibration])
    pets = pet_features(pool.features, pool.labels, seen, cfg.fallback)
    return replace(gate, prototypes=fit_prototypes(pets, cfg.gate_prototypes, cfg.seed))


def fold_gate(
    pool: Pool, train_idx: np.ndarray, cfg: TrainConfig, threshold: float | None
) -> FamiliarityGate | None:
    """The gate a cross-validation fold reproduces: its own training pets, the chosen threshold."""
    if threshold is None:
        return None
    pets = pet_features(pool.features, pool.labels, train_idx, cfg.fallback)
    return FamiliarityGate(
        fit_prototypes(pets, cfg.gate_prototypes, cfg.seed), threshold, cfg.fallback
    )
