"""Honest validation: intervals, kinds of ImageNet classes, duplicates, grouped splits, cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cats_dogs_other.train.dedupe import dhash, find_duplicates
from cats_dogs_other.train.feature_cache import FeatureCache
from cats_dogs_other.train.kinds import kind_of, parse_wnid
from cats_dogs_other.train.sources import build_pool
from cats_dogs_other.train.split import grouped_split
from cats_dogs_other.train.stats import format_proportion, proportion, wilson_interval

from .conftest import make_images, write_ecotag


def test_wilson_interval_matches_published_values() -> None:
    published = wilson_interval(81, 263)  # Newcombe (1998) example: 0.2553-0.3662
    assert published is not None
    assert (round(published[0], 4), round(published[1], 4)) == (0.2553, 0.3662)
    perfect = wilson_interval(12, 12)  # all right on 12: still not "certainly perfect"
    assert perfect is not None and perfect[1] == 1.0 and 0.75 < perfect[0] < 0.76
    assert wilson_interval(0, 0) is None


def test_proportion_is_written_with_n_and_interval() -> None:
    p = proportion(39, 40)
    assert p["value"] == 0.975 and p["k"] == 39 and p["n"] == 40
    assert format_proportion(p) == "97.5% (39/40, 95% CI 87.1%-99.6%)"
    assert format_proportion(proportion(0, 0)) == "n/a (n=0)"


@pytest.mark.parametrize(
    ("stem", "kind"),
    [
        ("n01443537_goldfish", "animals"),
        ("n02114367_timber_wolf", "animals"),
        ("n04285008_sports_car", "vehicles"),
        ("n03100240_convertible", "vehicles"),
        ("n02837789_bikini", "people"),
        ("n09835506_ballplayer", "people"),
        ("n07873807_pizza", "food"),
        ("n09332890_lakeside", "scenes"),
        ("n03028079_church", "scenes"),
        ("n06596364_comic_book", "drawings"),
        ("n07248320_book_jacket", "drawings"),
        ("n11939491_daisy", "plants"),
        ("n03000684_chain_saw", "objects"),
        ("n02672831_accordion", "objects"),
        ("n02655020_puffer", "animals"),
    ],
)
def test_kinds_come_from_the_wordnet_id_and_name(stem: str, kind: str) -> None:
    parsed = parse_wnid(stem)
    assert parsed is not None
    assert kind_of(*parsed) == kind


def test_file_names_without_a_wordnet_id_have_no_kind() -> None:
    assert parse_wnid("Cat12") is None and parse_wnid("cat_01") is None


def test_near_identical_images_share_a_hash_and_different_ones_do_not() -> None:
    rng = np.random.default_rng(0)
    photo = (rng.uniform(0, 255, (8, 8, 3)).repeat(20, 0).repeat(20, 1)).astype(np.uint8)
    resized = np.asarray(Image.fromarray(photo).resize((123, 97)))
    brighter = np.clip(photo.astype(int) + 12, 0, 255).astype(np.uint8)
    other = rng.uniform(0, 255, (160, 160, 3)).astype(np.uint8)
    hashes = [dhash(a) for a in (photo, resized, brighter, other)]
    dups = find_duplicates(["a", "b", "c", "d"], hashes)
    assert dups.keep.tolist() == [0, 3]
    assert {(i, j) for i, j, _ in dups.removed} == {(1, 0), (2, 0)}


def test_a_hash_match_needs_similar_features() -> None:
    features = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]], np.float32)
    dups = find_duplicates(["a", "b", "c"], [7, 7, 7], features=features)
    assert dups.keep.tolist() == [0, 2]  # c shares the hash but not the content
    assert dups.removed[0][2].startswith("near-identical (dHash distance 0, feature cosine 0.99")


def test_byte_identical_files_are_duplicates_whatever_their_hash() -> None:
    dups = find_duplicates(["x", "y", "x"], [0, 2**64 - 1, 12345], max_distance=0)
    assert dups.keep.tolist() == [0, 1]
    assert dups.removed == [(2, 0, "byte-identical")]


def test_grouped_split_never_cuts_a_group_and_holds_out_every_stratum() -> None:
    labels = np.array([0] * 40 + [2] * 60)
    strata = np.array(["pets"] * 40 + ["imagenet"] * 60)
    groups = [f"p{i}" for i in range(40)] + [f"n{i // 3}" for i in range(60)]  # 3 per class
    split = grouped_split(
        labels, strata, groups, val_fraction=0.1, calibration_fraction=0.1, test_fraction=0.2
    )
    parts = {"train": split.train, "val": split.val, "cal": split.calibration, "test": split.test}
    seen: dict[str, str] = {}
    for name, idx in parts.items():
        for i in idx:
            assert seen.setdefault(groups[i], name) == name, f"group {groups[i]} cut"
    assert sum(len(v) for v in parts.values()) == 100
    assert len(split.test) == 8 + 12 and len(split.calibration) == 4 + 6
    again = grouped_split(
        labels, strata, groups, val_fraction=0.1, calibration_fraction=0.1, test_fraction=0.2
    )
    assert np.array_equal(again.test, split.test)  # seeded


def test_a_stratum_too_small_to_split_stays_in_training() -> None:
    labels, strata = np.array([0, 0, 1]), np.array(["a", "a", "a"])
    split = grouped_split(
        labels,
        strata,
        ["g1", "g2", "g3"],
        val_fraction=0.3,
        calibration_fraction=0.3,
        test_fraction=0.3,
    )
    assert split.train.tolist() == [0, 1, 2]


class CountingExtractor:
    """Mean colour per view: enough to tell the classes apart; counts what it computes."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images: np.ndarray, view: str) -> np.ndarray:
        self.images += len(images) if view == "clean" else 0
        x = images[:, :, ::-1] if view == "flip" else images
        return x.reshape(len(x), -1, 3).mean(axis=1).astype(np.float32)


def test_a_second_pool_comes_from_the_cache(tmp_path: Path) -> None:
    a = write_ecotag(tmp_path / "a", per_class=4)
    b = tmp_path / "b"
    make_images(b / "dog", 3, seed=9)
    extract = CountingExtractor()
    kw: dict[str, Any] = {"side": 16, "views": ("clean", "flip"), "extract": extract}
    kw["progress"] = False
    first = build_pool([a, b], cache=FeatureCache(tmp_path / "cache", "k"), **kw)
    assert extract.images == 12 + 9
    assert first.source_names == ["a", "b"] and len(first) == 21
    second = build_pool([a, b], cache=FeatureCache(tmp_path / "cache", "k"), **kw)
    assert extract.images == 21  # nothing decoded or extracted again
    np.testing.assert_array_equal(second.features["flip"], first.features["flip"])
    shutil.copy(a / "extract" / "cat_00.png", b / "dog" / "copy.png")  # a new file: a duplicate
    third = build_pool([a, b], cache=FeatureCache(tmp_path / "cache", "k"), **kw)
    assert extract.images == 21 and len(third) == 21
    assert third.duplicates[0]["why"] == "byte-identical"


def test_a_damaged_cache_is_recomputed(tmp_path: Path) -> None:
    (tmp_path / "cache" / "k").mkdir(parents=True)
    (tmp_path / "cache" / "k" / "clean.npz").write_bytes(b"not a zip")
    cache = FeatureCache(tmp_path / "cache", "k")
    assert cache.missing("clean", ["abc"]) == ["abc"]
    cache.put("clean", ["abc"], np.ones((1, 3), np.float32))
    cache.save()
    assert FeatureCache(tmp_path / "cache", "k").missing("clean", ["abc"]) == []
