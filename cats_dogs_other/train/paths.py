"""Default locations of the shared data, weights and OOD images (never inside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

from cats_dogs_other.core.paths import REPO_ROOT

WEIGHTS_FILENAME = "mobilenet_v2_1.0_224_no_top.weights.h5"
OOD_MANIFEST = "manifest.json"
"""What the ``ood`` command writes last in its folder: a folder without one is not collected."""


def shared_dir() -> Path:
    """``$CDO_SHARED_DIR``, else ``../shared`` beside the repository (where CI puts it)."""
    env = os.environ.get("CDO_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def default_data_dir() -> Path:
    return shared_dir() / "datasets" / "cats_dogs_other"


def default_weights() -> Path:
    return shared_dir() / "weights" / WEIGHTS_FILENAME


def default_ood_dir() -> Path:
    """``$CDO_OOD_DIR``, else a user cache folder: the images are collected, not committed."""
    env = os.environ.get("CDO_OOD_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cats_dogs_other" / "ood"


def default_dataset_cache() -> Path:
    """Where the dataset manifest's downloaded archives are unpacked (a user cache folder)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cats_dogs_other" / "datasets"


def collected_ood_dir() -> Path | None:
    """The default OOD folder once the ``ood`` command has filled it, else None."""
    default = default_ood_dir()
    return default if (default / OOD_MANIFEST).is_file() else None


def default_cache_dir() -> Path:
    """``$CDO_CACHE_DIR``, else ``.cache/`` in the repository (git-ignored)."""
    env = os.environ.get("CDO_CACHE_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "features"
