"""Default locations of the shared data, weights, caches and OOD images (never in the repo)."""

from __future__ import annotations

import os
from pathlib import Path

from cats_dogs_other.core.paths import REPO_ROOT

WEIGHTS_FILENAME = "mobilenet_v2_1.0_224_no_top.weights.h5"
OOD_MANIFEST = "manifest.json"
"""What the ``ood`` command writes last in its folder: a folder without one is not collected."""


def _env(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default)


def _user_cache() -> Path:
    return _env("XDG_CACHE_HOME", Path.home() / ".cache") / "cats_dogs_other"


def shared_dir() -> Path:
    """``../shared`` beside the repository is where CI puts it."""
    return _env("CDO_SHARED_DIR", REPO_ROOT.parent / "shared")


def default_data_dir() -> Path:
    return shared_dir() / "datasets" / "cats_dogs_other"


def default_weights() -> Path:
    return shared_dir() / "weights" / WEIGHTS_FILENAME


def default_cache_dir() -> Path:
    return _env("CDO_CACHE_DIR", REPO_ROOT / ".cache" / "features")


def default_dataset_cache() -> Path:
    return _user_cache() / "datasets"


def default_ood_dir() -> Path:
    """A user cache folder by default: the images are collected, not committed."""
    return _env("CDO_OOD_DIR", _user_cache() / "ood")


def collected_ood_dir() -> Path | None:
    """The default OOD folder once the collector has filled it."""
    folder = default_ood_dir()
    return folder if (folder / OOD_MANIFEST).is_file() else None
