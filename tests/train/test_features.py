"""The frozen backbone's views of an image: as it is, mirrored, or augmented (seeded)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cats_dogs_other.train.features import forward_fn, make_extractor


@pytest.fixture(scope="module")
def backbone() -> Any:
    from cats_dogs_other.train.network import build_backbone

    return build_backbone("tiny", (32, 32))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def test_clean_and_flip_are_the_image_and_its_mirror(backbone: Any, images: np.ndarray) -> None:
    extract = make_extractor(backbone, seed=0)
    clean, flip = extract(images, "clean"), extract(images, "flip")
    assert clean.shape == flip.shape == (3, 24) and clean.dtype == np.float32
    np.testing.assert_allclose(flip, extract(images[:, :, ::-1], "clean"), atol=1e-5)
    assert not np.allclose(clean, flip)


def test_augmented_views_differ_and_repeat_with_the_seed(backbone: Any, images: np.ndarray) -> None:
    first, again = make_extractor(backbone, seed=5), make_extractor(backbone, seed=5)
    aug0, aug1 = first(images, "aug0"), first(images, "aug1")
    assert aug0.shape == (3, 24) and not np.allclose(aug0, aug1)
    assert not np.allclose(aug0, first(images, "clean"))
    np.testing.assert_allclose(again(images, "aug1"), aug1, atol=1e-5)


def test_an_unknown_view_is_refused(backbone: Any, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown feature view 'sepia'"):
        make_extractor(backbone, seed=0)(images, "sepia")


def test_the_compiled_call_is_kept_per_model(backbone: Any) -> None:
    assert forward_fn(backbone) is forward_fn(backbone)
