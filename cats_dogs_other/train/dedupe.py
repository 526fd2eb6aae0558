"""Byte-identical and near-identical images, found before splitting, so no photo (or a resized,
re-encoded copy of it) sits on both sides of a split. Near-identical: 64-bit difference hashes
(dHash) within ``max_distance`` bits, confirmed by the backbone's features (cosine), since a flat
or dark picture can share a dHash with an unrelated one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

DEFAULT_MAX_DISTANCE = 4
DEFAULT_MIN_COSINE = 0.9


def dhash(pixels: np.ndarray) -> int:
    """Grey 9x8 thumbnail, one bit per "brighter than its right neighbour"."""
    grey = Image.fromarray(np.ascontiguousarray(pixels)).convert("L")
    small = np.asarray(grey.resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


class Duplicates(NamedTuple):
    keep: np.ndarray
    removed: list[tuple[int, int, str]]
    """(dropped, kept instead, why)."""


def find_duplicates(
    content_sha256: Sequence[str],
    hashes: Sequence[int],
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    features: np.ndarray | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
) -> Duplicates:
    """The first image of each cluster is kept (earlier ``--data`` sources win); clusters are
    transitive (union-find: if a ~ b and b ~ c, only a is kept)."""
    parent = list(range(len(hashes)))
    why: dict[int, str] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    same = [(first.setdefault(d, i), i, "byte-identical") for i, d in enumerate(content_sha256)]
    for a, b, reason in [*same, *_near_identical(hashes, max_distance, features, min_cosine)]:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            why.setdefault(b, reason)
    keep = np.asarray(sorted({root(i) for i in range(len(parent))}), dtype=np.int64)
    removed = [(i, root(i), why.get(i, "duplicate")) for i in range(len(parent)) if root(i) != i]
    return Duplicates(keep, removed)


def _near_identical(
    hashes: Sequence[int], max_distance: int, features: np.ndarray | None, min_cosine: float
) -> list[tuple[int, int, str]]:
    packed = np.asarray([h & ((1 << 64) - 1) for h in hashes], dtype=np.uint64)
    unit = None
    if features is not None:
        unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    pairs = []
    for i in range(len(hashes) - 1):
        as_bytes = (packed[i + 1 :] ^ packed[i]).view(np.uint8).reshape(-1, 8)
        distance = np.unpackbits(as_bytes, axis=1).sum(axis=1)
        for j in np.flatnonzero(distance <= max_distance) + i + 1:
            detail = f"dHash distance {int(distance[j - i - 1])}"
            if unit is not None:
                if (cosine := float(unit[i] @ unit[j])) < min_cosine:
                    continue
                detail += f", feature cosine {cosine:.3f}"
            pairs.append((i, int(j), f"near-identical ({detail})"))
    return pairs
