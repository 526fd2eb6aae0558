"""Frozen-backbone features on disk: one ``.npz`` per view maps an image's content sha256 to its
vector, in a folder named by a hash of the rest (weights, side...), so a new head setting, split or
seed reuses every entry and a second run skips decode and backbone."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from kto.inference.model import file_sha256 as file_sha256

log = logging.getLogger(__name__)

FORMAT = "cdo-features/1"


def cache_key(*parts: str) -> str:
    """Folder name for one backbone configuration (weights hash, side, decoder version...)."""
    return hashlib.sha256("\0".join((FORMAT, *parts)).encode()).hexdigest()[:20]


class FeatureCache:
    """Per-view tables ``sha256 -> vector``; ``directory=None`` keeps them in memory only."""

    def __init__(self, directory: Path | None, key: str) -> None:
        self.directory = Path(directory) / key if directory is not None else None
        self._tables: dict[str, dict[str, np.ndarray]] = {}
        self._dirty: set[str] = set()

    def table(self, view: str) -> dict[str, np.ndarray]:
        if view not in self._tables:
            self._tables[view] = self._read(view)
        return self._tables[view]

    def missing(self, view: str, digests: list[str]) -> list[str]:
        return [d for d in dict.fromkeys(digests) if d not in self.table(view)]

    def put(self, view: str, digests: list[str], vectors: np.ndarray) -> None:
        self.table(view).update(zip(digests, map(np.asarray, vectors), strict=True))
        self._dirty.add(view)

    def stack(self, view: str, digests: list[str]) -> np.ndarray:
        table = self.table(view)
        return np.stack([table[d] for d in digests]) if digests else np.zeros((0, 0), np.float32)

    def save(self) -> None:
        """Atomic per view (a temporary file, then a rename): a killed run leaves no half file."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for view in sorted(self._dirty):
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as fh:
                digests = sorted(self._tables[view])
                np.savez(fh, sha256=np.asarray(digests), values=self.stack(view, digests))
            os.replace(tmp, self.directory / f"{view}.npz")
        self._dirty.clear()

    def _read(self, view: str) -> dict[str, np.ndarray]:
        path = self.directory / f"{view}.npz" if self.directory is not None else None
        if path is None or not path.is_file():
            return {}
        try:
            with np.load(path) as data:
                return dict(zip(data["sha256"].tolist(), data["values"], strict=True))
        except (OSError, ValueError, KeyError) as exc:  # damaged: recompute, never crash
            log.warning("ignoring unreadable feature cache %s: %s", path, exc)
            return {}
