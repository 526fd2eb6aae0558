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
