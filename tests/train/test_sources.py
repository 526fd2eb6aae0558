"""Several sources as one pool of unique images; a second pool comes from the feature cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.feature_cache import FeatureCache
from cats_dogs_other.train.sources import build_pool

from .conftest import CountingExtractor, make_images, write_ecotag


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
    assert third.duplicates[0].why == "byte-identical"
