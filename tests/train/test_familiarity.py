"""The familiarity gate: unfamiliar images go to Other, in NumPy and in the saved network alike."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cats_dogs_other.train.calibration import decide
from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.familiarity import (
    SLOPE,
    FamiliarityGate,
    blend,
    choose_gate,
    fit_prototypes,
    pet_gate,
    unit_rows,
)

OTHER = 2


def _gate(threshold: float = 0.8) -> FamiliarityGate:
    prototypes = unit_rows(np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
    return FamiliarityGate(prototypes, threshold, OTHER)


def test_an_image_far_from_every_pet_is_answered_other() -> None:
    gate = _gate()
    probs = np.array([[0.1, 0.85, 0.05], [0.1, 0.85, 0.05]], np.float32)
    features = np.array([[0.1, 3.0, 0.1, 0.0], [0.0, 0.0, 1.0, 1.0]], np.float32)  # near, far
    gated = gate.apply(probs, features)
    np.testing.assert_allclose(gated.sum(axis=1), 1.0, atol=1e-6)
    assert decide(gated, None, OTHER).tolist() == [1, OTHER]
    np.testing.assert_allclose(gated[0], probs[0], atol=1e-3)  # a familiar image keeps its answer


def test_the_saved_network_gates_exactly_as_the_numpy_figures_do() -> None:
    import keras

    from cats_dogs_other.train.network import assemble, build_head

    rng = np.random.default_rng(0)
    features = rng.normal(size=(16, 4)).astype(np.float32)
    identity = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Identity()])
    head = build_head(4, 3, dropout=0.0, l2=0.0)
    gate = _gate(threshold=0.6)
    model = assemble(identity, head, "m", gate=gate)
    expected = gate.apply(np.asarray(head(features)), features)
    np.testing.assert_allclose(np.asarray(model(features)), expected, atol=1e-5)


def test_the_threshold_is_the_lowest_of_the_best_and_kept_only_when_it_pays() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, OTHER, OTHER])
    similarity = np.array([0.9, 0.7, 0.4, 0.3])  # the Other called Dog is unlike every pet
    threshold, report = choose_gate(probs, similarity, labels, OTHER, prototypes=2)
    assert threshold is not None and 0.3 < threshold < 0.7
    assert report.macro_recall_with_best == 1.0 > report.macro_recall_without

    def answers(t: float) -> list[int]:
        return decide(blend(probs, similarity, t, OTHER, SLOPE), None, OTHER).tolist()

    assert answers(threshold) == labels.tolist()
    assert answers(round(threshold - 0.01, 2)) != labels.tolist()  # the lowest that gets it right
    threshold, report = choose_gate(probs[:2], similarity[:2], labels[:2], OTHER, prototypes=2)
    assert threshold is None and report.chosen is None


def test_prototypes_are_unit_centres_and_only_of_pets() -> None:
    rng = np.random.default_rng(1)
    features = {"clean": rng.normal(size=(30, 8)), "flip": rng.normal(size=(30, 8))}
    labels = np.array([0, 1, OTHER] * 10)
    pool = SimpleNamespace(features=features, labels=labels)
    cfg = TrainConfig(data=Path("d"), out=Path("o"), gate_prototypes=100, seed=0)
    gate = pet_gate(pool, np.arange(30), cfg, 0.5)  # type: ignore[arg-type]
    pets = np.concatenate([features[v][labels != OTHER] for v in ("clean", "flip")])
    assert gate.prototypes.shape == (40, 8)  # 20 pets, clean + mirrored, fewer than k: all kept
    np.testing.assert_allclose(gate.prototypes, unit_rows(pets), atol=1e-6)
    assert (gate.threshold, gate.fallback) == (0.5, OTHER)
    prototypes = fit_prototypes(pets, k=5, seed=0)
    assert prototypes.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), 1.0, atol=1e-5)
    assert fit_prototypes(pets[:3], k=5, seed=0).shape == (3, 8)  # fewer pets than k: all kept


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_extreme_thresholds_never_or_always_gate(threshold: float) -> None:
    gate = _gate(threshold)
    probs = np.array([[0.1, 0.85, 0.05]], np.float32)
    pred = decide(gate.apply(probs, np.array([[0.5, 0.5, 0.5, 0.5]])), None, OTHER)
    assert pred.tolist() == ([1] if threshold == 0.0 else [OTHER])
