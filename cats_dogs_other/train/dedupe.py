"""Find byte-identical and near-identical images before splitting, so no photo (or a resized,
re-encoded copy of it) sits on both sides of a train/test split.

Near-identical: a 64-bit difference hash (dHash: grey 9x8 thumbnail, one bit per "is this pixel
brighter than its right neighbour") within ``max_distance`` bits. dHash survives resizing,
re-encoding and small colour changes; different photos of the same scene rarely come within a
few bits of each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_MAX_DISTANCE = 4
# A hash match is confirmed by the backbone: copies of one photo have nearly the same features,
# while a flat or dark picture can share a dHash with an unrelated one.
DEFAULT_MIN_COSINE = 0.9


def dhash(pixels: np.ndarray) -> int:
    """64-bit difference hash of an RGB uint8 array."""
    grey = Image.fromarray(np.ascontiguousarray(pixels)).convert("L")
    small = np.asarray(grey.resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


@dataclass(frozen=True)
class Duplicates:
    """``keep``: indices of the images kept; ``removed``: (dropped, kept-instead, why)."""

    keep: np.ndarray
    removed: list[tuple[int, int, str]]


def find_duplicates(
    content_sha256: Sequence[str],
    hashes: Sequence[int],
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    features: np.ndarray | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
) -> Duplicates:
    """Keep the first image of each cluster (listing order: earlier ``--data`` sources win).

    A hash match within ``max_distance`` bits counts only if the images' ``features`` (when
    given) have cosine similarity of at least ``min_cosine``. Clusters are transitive
    (union-find): if a ~ b and b ~ c, only a is kept.
    """
    clusters = _Clusters(len(hashes))
    first_by_content: dict[str, int] = {}
    for i, digest in enumerate(content_sha256):
        if digest in first_by_content:
            clusters.join(first_by_content[digest], i, "byte-identical")
        else:
            first_by_content[digest] = i
    if len(hashes):
        _join_near_identical(clusters, hashes, max_distance, features, min_cosine)
    return clusters.duplicates()


class _Clusters:
    """Union-find over image indices; a cluster's root is its earliest image."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.why: dict[tuple[int, int], str] = {}

    def root(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(self, a: int, b: int, reason: str) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
            self.why[(b, a)] = reason

    def duplicates(self) -> Duplicates:
        n = len(self.parent)
        keep = np.asarray(sorted({self.root(i) for i in range(n)}), dtype=np.int64)
        removed = [
            (i, self.root(i), next((r for (b, _), r in self.why.items() if b == i), "duplicate"))
            for i in range(n)
            if self.root(i) != i
        ]
        return Duplicates(keep, removed)


def _join_near_identical(
    clusters: _Clusters,
    hashes: Sequence[int],
    max_distance: int,
    features: np.ndarray | None,
    min_cosine: float,
) -> None:
    packed = np.asarray([h & ((1 << 64) - 1) for h in hashes], dtype=np.uint64)
    unit = None
    if features is not None:
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        unit = features / np.maximum(norms, 1e-12)
    for i in range(len(hashes) - 1):
        distance = _popcount(packed[i + 1 :] ^ packed[i])
        for j in np.flatnonzero(distance <= max_distance) + i + 1:
            cosine = None if unit is None else float(unit[i] @ unit[j])
            if cosine is not None and cosine < min_cosine:
                continue
            detail = f"dHash distance {int(distance[j - i - 1])}"
            detail += "" if cosine is None else f", feature cosine {cosine:.3f}"
            clusters.join(i, int(j), f"near-identical ({detail})")


def _popcount(values: np.ndarray) -> np.ndarray:
    as_bytes = values.view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1)
