"""The out-of-distribution measurement: which photos the saved model sends to Other, per
category, from a collected folder (manifest) or one gathered by hand (name prefixes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cats_dogs_other.testing.tiny_model import save_tiny_model
from cats_dogs_other.train.ood import load_ood, measure_ood, set_hash
from cats_dogs_other.train.paths import OOD_MANIFEST

CLASSES = ("Cat", "Dog", "Other")
OTHER = 2
RED, GREEN, BLUE = (200, 40, 40), (40, 190, 50), (40, 60, 200)


def solid(folder: Path, name: str, rgb: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 50, 3), rgb, np.uint8)).save(folder / name)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The colour model: red -> Cat, green -> Dog, blue -> Other."""
    import keras

    return keras.models.load_model(save_tiny_model(tmp_path_factory.mktemp("ood-model")))


@pytest.fixture
def by_hand(tmp_path: Path) -> Path:
    """A folder gathered by hand: categories are the ``category__`` name prefixes."""
    folder = tmp_path / "ood"
    solid(folder, "food__red.png", RED)
    solid(folder, "food__blue.png", BLUE)
    solid(folder, "text__blue.png", BLUE)
    solid(folder, "plain.png", GREEN)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_hand_gathered_folder_is_measured_per_name_prefix(by_hand: Path, tiny_model: Any) -> None:
    report = measure_ood(by_hand, tiny_model, CLASSES, None, OTHER)
    assert (report.all.k, report.all.n, report.all.value) == (2, 4, 0.5)
    shares = {c: (p.k, p.n) for c, p in report.per_category.items()}
    assert shares == {"food": (1, 2), "text": (1, 1), "unknown": (0, 1)}
    assert {(m.file, m.prediction) for m in report.not_other} == {
        ("food__red.png", "Cat"),
        ("plain.png", "Dog"),
    }
    assert report.sha256 == set_hash(by_hand, [p.name for p in by_hand.glob("*.png")])


def test_a_threshold_above_every_probability_sends_everything_to_other(
    by_hand: Path, tiny_model: Any
) -> None:
    report = measure_ood(by_hand, tiny_model, CLASSES, 1.01, OTHER)
    assert (report.all.k, report.all.n) == (4, 4) and report.not_other == []


def test_a_collected_folder_takes_its_manifest_categories(tmp_path: Path) -> None:
    folder = tmp_path / "collected"
    solid(folder, "a.png", RED)
    solid(folder, "b.png", BLUE)
    solid(folder, "ignored.png", GREEN)  # on disk, not in the manifest: not measured
    images = [{"file": "a.png", "category": "tools"}, {"file": "b.png", "category": "cars"}]
    (folder / OOD_MANIFEST).write_text(json.dumps({"images": images}), encoding="utf-8")
    ood = load_ood(folder, (16, 24))
    assert ood.names == ["a.png", "b.png"] and ood.categories == ["tools", "cars"]
    assert ood.images.shape == (2, 16, 24, 3)
    assert ood.sha256 == set_hash(folder, ["b.png", "a.png"])  # order-free


def test_a_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures")
    with pytest.raises(FileNotFoundError, match="no out-of-distribution images in"):
        load_ood(tmp_path / "empty", (32, 32))


def test_the_set_hash_names_contents_and_names(tmp_path: Path) -> None:
    solid(tmp_path, "x.png", RED)
    solid(tmp_path, "y.png", BLUE)
    before = set_hash(tmp_path, ["x.png", "y.png"])
    assert set_hash(tmp_path, ["x.png"]) != before
    (tmp_path / "y.png").rename(tmp_path / "z.png")
    assert set_hash(tmp_path, ["x.png", "z.png"]) != before  # same bytes, another name
    solid(tmp_path, "y.png", GREEN)
    assert set_hash(tmp_path, ["x.png", "y.png"]) != before  # same name, other bytes
