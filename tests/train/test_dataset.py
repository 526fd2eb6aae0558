"""Reading both dataset layouts, and the errors a person gets for bad input."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cats_dogs_other.train.dataset import DEFAULT_CLASSES as CLASSES
from cats_dogs_other.train.dataset import dataset_sha256, find_samples
from cats_dogs_other.train.errors import (
    ClassTooSmallError,
    DatasetError,
    MissingImagesError,
    UnknownLabelsError,
)

from .conftest import pool_of, write_ecotag, write_folders


def _annotations(root: Path) -> tuple[Path, dict]:
    path = next(root.glob("*.json"))
    return path, json.loads(path.read_text())


def test_ecotag_and_folders_give_the_same_dataset(tmp_path: Path) -> None:
    eco_dir, folders_dir = write_ecotag(tmp_path / "e", 5), write_folders(tmp_path / "f", 5)
    (eco, eco_format), (folders, folders_format) = find_samples(eco_dir), find_samples(folders_dir)
    assert (eco_format, folders_format) == ("ecotag", "folders")
    counts = [sorted(Counter(s.label for s in samples).items()) for samples in (eco, folders)]
    assert counts[0] == counts[1] == [(0, 5), (1, 5), (2, 5)]
    pool = pool_of(tmp_path, eco_dir)
    assert pool.classes == ("Cat", "Dog", "Other") and len(pool) == 15
    # labels follow the colours: red images are cats
    cats = pool.features["clean"][pool.labels == 0].mean(axis=0)
    assert cats[0] > cats[1] and cats[0] > cats[2]


def test_dataset_hash_is_stable_and_tracks_content(tmp_path: Path) -> None:
    root = write_ecotag(tmp_path / "e", 4)
    first = dataset_sha256(find_samples(root)[0], CLASSES)
    assert dataset_sha256(find_samples(root)[0][::-1], CLASSES) == first  # not order-dependent
    img = root / "extract" / "dog_01.png"
    pixels = np.asarray(Image.open(img)).copy()
    pixels[0, 0] = (pixels[0, 0] + 1) % 255
    Image.fromarray(pixels).save(img)
    assert dataset_sha256(find_samples(root)[0], CLASSES) != first


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


def test_corrupt_images_are_skipped_and_counted(tmp_path: Path, ecotag_dir: Path) -> None:
    extract = ecotag_dir / "extract"
    (extract / "cat_01.png").write_bytes(b"this is not a png")
    good = (extract / "dog_02.png").read_bytes()
    (extract / "dog_02.png").write_bytes(good[: len(good) // 2])  # truncated
    pool = pool_of(tmp_path, ecotag_dir)
    assert len(pool) == 34
    assert {s["file"]: s["reason"] for s in pool.source_info[0].skipped} == {
        "cat_01.png": "not_an_image",
        "dog_02.png": "truncated",
    }
    assert "cat_01.png" not in pool.names


def test_a_class_left_empty_by_corrupt_images_is_an_error(tmp_path: Path) -> None:
    root = write_folders(tmp_path / "f", 2)
    for f in (root / "Other").iterdir():
        f.write_bytes(b"garbage")
    with pytest.raises(ClassTooSmallError, match="once corrupt images are skipped"):
        pool_of(tmp_path, root)


def test_the_annotations_file_itself_may_be_the_data(ecotag_dir: Path) -> None:
    path, _ = _annotations(ecotag_dir)
    samples, fmt = find_samples(path)
    assert fmt == "ecotag" and len(samples) == 36
    assert all(s.path.parent == ecotag_dir / "extract" for s in samples)


def test_unreadable_json_beside_the_export_is_passed_over(ecotag_dir: Path) -> None:
    """Files sort before the export: a broken one and one without annotations are not it."""
    (ecotag_dir / "a-broken.json").write_text("{not json")
    (ecotag_dir / "b-other.json").write_text(json.dumps({"annotations": "not a list"}))
    samples, fmt = find_samples(ecotag_dir)
    assert fmt == "ecotag" and len(samples) == 36


def test_a_json_file_that_is_no_export_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match=r"notes\.json is not an Ecotag export"):
        find_samples(tmp_path / "notes.json")


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"x": 1}, "'annotations' must be a list"),
        ([{"fileName": "a.png"}], "annotation #0 lacks fileName or annotation.label"),
        (["a.png"], "annotation #0 lacks fileName or annotation.label"),
        ([{"fileName": "/etc/passwd", "annotation": {"label": "cat"}}], "invalid fileName"),
        ([{"fileName": 7, "annotation": {"label": "cat"}}], "invalid fileName or label"),
        ([], "the export has no annotations"),
    ],
)
def test_a_malformed_export_names_what_is_wrong(
    tmp_path: Path, annotations: object, message: str
) -> None:
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"annotations": annotations}))
    with pytest.raises(DatasetError, match=re.escape(message)) as info:
        find_samples(export)
    assert str(export) in str(info.value)


def test_one_of_several_sources_may_lack_a_class(tmp_path: Path) -> None:
    root = write_folders(tmp_path / "f", 3)
    for f in (root / "Cat").iterdir():
        f.unlink()
    samples, _ = find_samples(root, every_class=False)
    assert sorted(Counter(s.label for s in samples).items()) == [(1, 3), (2, 3)]
