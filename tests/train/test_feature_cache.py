"""The feature cache on disk: a damaged file is recomputed, never fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cats_dogs_other.train.feature_cache import FeatureCache


def test_a_damaged_cache_is_recomputed(tmp_path: Path) -> None:
    (tmp_path / "cache" / "k").mkdir(parents=True)
    (tmp_path / "cache" / "k" / "clean.npz").write_bytes(b"not a zip")
    cache = FeatureCache(tmp_path / "cache", "k")
    assert cache.missing("clean", ["abc"]) == ["abc"]
    cache.put("clean", ["abc"], np.ones((1, 3), np.float32))
    cache.save()
    assert FeatureCache(tmp_path / "cache", "k").missing("clean", ["abc"]) == []


def test_entries_survive_a_new_cache_per_view_and_key(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "k")
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put("clean", ["b", "a"], vectors)
    cache.put("flip", ["a"], vectors[:1] * -1)
    cache.save()
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["clean.npz", "flip.npz"]
    again = FeatureCache(tmp_path, "k")
    np.testing.assert_array_equal(again.stack("clean", ["a", "b"]), vectors[::-1])
    np.testing.assert_array_equal(again.stack("flip", ["a"]), -vectors[:1])
    assert again.missing("flip", ["a", "b", "b"]) == ["b"]  # each digest once
    assert FeatureCache(tmp_path, "other-key").missing("clean", ["a"]) == ["a"]


def test_without_a_directory_nothing_is_written(tmp_path: Path) -> None:
    cache = FeatureCache(None, "k")
    cache.put("clean", ["a"], np.ones((1, 2), np.float32))
    cache.save()
    assert cache.missing("clean", ["a"]) == [] and cache.stack("clean", []).shape == (0, 0)
    assert not any(tmp_path.iterdir())
