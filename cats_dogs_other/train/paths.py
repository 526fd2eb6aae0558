"""Default locations of the shared data, weights, caches and OOD images (never in the repo);
each moves with its environment variable (an empty one keeps the default)."""

from __future__ import annotations

import os
from pathlib import Path

from cats_dogs_other.core.paths import REPO_ROOT

WEIGHTS_FILENAME = "mobilenet_v2_1.0_224_no_top.weights.h5"
OOD_MANIFEST = "manifest.json"
"""What the OOD collector writes last in its folder: a folder without one is not collected."""


def _env(name: str, default: Path, *under: str) -> Path:
    return Path(os.environ.get(name) or default).joinpath(*under)


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
    return _env("XDG_CACHE_HOME", Path.home() / ".cache", "cats_dogs_other", "datasets")


def default_ood_dir() -> Path:
    """Collected, not committed: a user cache folder by default."""
    user_cache = _env("XDG_CACHE_HOME", Path.home() / ".cache", "cats_dogs_other", "ood")
    return _env("CDO_OOD_DIR", user_cache)


def collected_ood_dir() -> Path | None:
    """The default OOD folder once the collector has filled it."""
    return folder if ((folder := default_ood_dir()) / OOD_MANIFEST).is_file() else None
