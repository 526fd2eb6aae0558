"""Reading both dataset layouts, and the errors a person gets for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cats_dogs_other.train.dataset import find_samples, load_dataset
from cats_dogs_other.train.errors import (
    ClassTooSmallError,
    DatasetError,
    MissingImagesError,
    UnknownLabelsError,
)

from .conftest import write_ecotag, write_folders


def _annotations(root: Path) -> tuple[Path, dict]:
    path = next(root.glob("*.json"))
    return path, json.loads(path.read_text())


def test_ecotag_and_folders_give_the_same_dataset(tmp_path: Path) -> None:
    eco = load_dataset(write_ecotag(tmp_path / "e", 5), (16, 16), progress=False)
    folders = load_dataset(write_folders(tmp_path / "f", 5), (16, 16), progress=False)
    assert (eco.format, folders.format) == ("ecotag", "folders")
    assert eco.classes == folders.classes == ("Cat", "Dog", "Other")
    assert eco.class_counts() == folders.class_counts() == {"Cat": 5, "Dog": 5, "Other": 5}
    assert eco.images.shape == folders.images.shape == (15, 16, 16, 3)
    assert eco.images.dtype == np.uint8
    # labels follow the colours: red images are cats
    cats = eco.images[eco.labels == 0].reshape(-1, 3).mean(axis=0)
    assert cats[0] > cats[1] and cats[0] > cats[2]


def test_dataset_hash_is_stable_and_tracks_content(tmp_path: Path) -> None:
    root = write_ecotag(tmp_path / "e", 4)
    first = load_dataset(root, (8, 8), progress=False).sha256
    assert load_dataset(root, (12, 12), progress=False).sha256 == first  # not size-dependent
    img = root / "extract" / "dog_01.png"
    pixels = np.asarray(Image.open(img)).copy()
    pixels[0, 0] = (pixels[0, 0] + 1) % 255
    Image.fromarray(pixels).save(img)
    assert load_dataset(root, (8, 8), progress=False).sha256 != first


def test_missing_images_are_listed(ecotag_dir: Path) -> None:
    (ecotag_dir / "extract" / "cat_03.png").unlink()
    (ecotag_dir / "extract" / "dog_07.png").unlink()
    with pytest.raises(MissingImagesError) as info:
        find_samples(ecotag_dir)
    assert info.value.missing == ["cat_03.png", "dog_07.png"]
    assert "cat_03.png" in str(info.value) and "dog_07.png" in str(info.value)


def test_unknown_labels_are_an_error(ecotag_dir: Path) -> None:
    path, doc = _annotations(ecotag_dir)
    doc["annotations"][0]["annotation"]["label"] = "hamster"
    path.write_text(json.dumps(doc))
    with pytest.raises(UnknownLabelsError, match="'hamster'") as info:
        find_samples(ecotag_dir)
    assert "Cat, Dog, Other" in str(info.value)


def test_unknown_class_folder_is_an_error(folders_dir: Path) -> None:
    (folders_dir / "Hamster").mkdir()
    (folders_dir / "Cat" / "cat_00.png").rename(folders_dir / "Hamster" / "h.png")
    with pytest.raises(UnknownLabelsError, match="Hamster"):
        find_samples(folders_dir)


def test_labels_match_case_insensitively(ecotag_dir: Path) -> None:
    path, doc = _annotations(ecotag_dir)
    doc["annotations"][0]["annotation"]["label"] = "CAT"
    path.write_text(json.dumps(doc))
    samples, _ = find_samples(ecotag_dir)
    assert len(samples) == 36


def test_conflicting_labels_for_one_file_are_an_error(ecotag_dir: Path) -> None:
    path, doc = _annotations(ecotag_dir)
    duplicate = dict(doc["annotations"][0], annotation={"label": "dog"})
    doc["annotations"].append(duplicate)
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="labelled both"):
        find_samples(ecotag_dir)


def test_a_class_without_images_is_an_error(tmp_path: Path) -> None:
    root = write_folders(tmp_path / "f", 3)
    for f in (root / "Dog").iterdir():
        f.unlink()
    with pytest.raises(ClassTooSmallError, match="Dog"):
        find_samples(root)


def test_neither_layout_is_explained(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither an Ecotag export"):
        find_samples(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not found"):
        find_samples(tmp_path / "nowhere")


def test_corrupt_images_are_skipped_and_counted(ecotag_dir: Path) -> None:
    extract = ecotag_dir / "extract"
    (extract / "cat_01.png").write_bytes(b"this is not a png")
    good = (extract / "dog_02.png").read_bytes()
    (extract / "dog_02.png").write_bytes(good[: len(good) // 2])  # truncated
    ds = load_dataset(ecotag_dir, (16, 16), progress=False)
    assert len(ds) == 34
    assert {s["file"]: s["reason"] for s in ds.skipped} == {
        "cat_01.png": "not_an_image",
        "dog_02.png": "truncated",
    }
    assert "cat_01.png" not in ds.names


def test_a_class_left_empty_by_corrupt_images_is_an_error(tmp_path: Path) -> None:
    root = write_folders(tmp_path / "f", 2)
    for f in (root / "Other").iterdir():
        f.write_bytes(b"garbage")
    with pytest.raises(ClassTooSmallError, match="once corrupt images are skipped"):
        load_dataset(root, (8, 8), progress=False)
