"""Byte-identical and near-identical images, found before any split."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cats_dogs_other.train.dedupe import dhash, find_duplicates


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


def test_clusters_are_transitive_and_keep_their_earliest_image() -> None:
    # 0 ~ 2 (3 bits), 2 ~ 1 (2 bits), 0 and 1 are 5 bits apart: one cluster, image 0 kept
    hashes = [0b00000, 0b11111, 0b00111, 2**64 - 1]
    dups = find_duplicates(["a", "b", "c", "d"], hashes, max_distance=3)
    assert dups.keep.tolist() == [0, 3]
    assert sorted((i, j) for i, j, _ in dups.removed) == [(1, 0), (2, 0)]
    reasons = {i: why for i, _, why in dups.removed}
    assert reasons[2] == "near-identical (dHash distance 3)"
