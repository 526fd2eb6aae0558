"""Several labelled sources (``--data`` repeated) as one pool of unique images with features.

Each source keeps its layout (Ecotag export or one folder per class) and its folder's name, so
every figure can be given per source. An image's group is the unit a split never cuts: its
ImageNet class when the file name starts with a WordNet id (``n01530575_...``), so held-out
ImageNet classes are wholly unseen; otherwise the image itself. Images are decoded and passed
through the backbone only when the feature cache lacks them; duplicates are dropped before any
split (dedupe.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from kto.inference import DEFAULT_MAX_PIXELS
from tqdm.auto import tqdm

from cats_dogs_other.train.dataset import (
    DEFAULT_CLASSES,
    Sample,
    check_every_class_present,
    dataset_sha256,
    find_samples,
)
from cats_dogs_other.train.dedupe import dhash, find_duplicates
from cats_dogs_other.train.errors import DatasetError
from cats_dogs_other.train.feature_cache import FeatureCache, file_sha256
from cats_dogs_other.train.features import Extractor
from cats_dogs_other.train.kinds import kind_of, parse_wnid
from cats_dogs_other.train.results import DatasetReport, DuplicateRecord, SourceReport

HASH_VIEW = "dhash"
BATCH = 32
"""Images decoded and passed through the backbone at a time."""
Row = tuple[int, Sample, str]
"""(index of the source in ``--data`` order, sample, content sha256)."""
Failures = dict[str, dict[str, str]]
"""Content sha256 of an undecodable file -> why."""


@dataclass
class SourceInfo:
    name: str
    path: str
    format: str
    sha256: str
    listed: int
    per_class: dict[str, int]
    used: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Pool:
    """Unique, decodable images of every source, in ``--data`` order, with their features."""

    classes: tuple[str, ...]
    labels: np.ndarray
    sources: np.ndarray
    names: list[str]
    paths: list[Path]
    groups: list[str]
    kinds: list[str | None]
    """ImageNet kind (animals, objects...) of an image named by WordNet id, else None."""
    digests: list[str]
    features: dict[str, np.ndarray]
    """view ("clean", "flip", "aug1"...) -> (n, d) backbone features."""
    source_info: list[SourceInfo]
    duplicates: list[DuplicateRecord]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.source_info]

    def class_counts(self, mask: np.ndarray | None = None) -> dict[str, int]:
        counts = Counter(int(i) for i in (self.labels if mask is None else self.labels[mask]))
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}


def list_sources(
    data: Sequence[Path], classes: Sequence[str] = DEFAULT_CLASSES
) -> list[tuple[SourceInfo, list[Sample]]]:
    """Every source's samples, with a unique name per source (its folder name)."""
    out: list[tuple[SourceInfo, list[Sample]]] = []
    seen: Counter[str] = Counter()
    for path in map(Path, data):
        samples, fmt = find_samples(path, classes, every_class=len(data) == 1)
        base = path.resolve().name if path.is_dir() else path.stem
        seen[base] += 1
        counts = Counter(s.label for s in samples)
        info = SourceInfo(
            name=base if seen[base] == 1 else f"{base}-{seen[base]}",
            path=str(path),
            format=fmt,
            sha256=dataset_sha256(samples, tuple(classes)),
            listed=len(samples),
            per_class={c: counts.get(i, 0) for i, c in enumerate(classes)},
        )
        out.append((info, samples))
    check_every_class_present([s for _, samples in out for s in samples], tuple(classes))
    return out


def build_pool(
    data: Sequence[Path],
    *,
    side: int,
    views: Sequence[str],
    extract: Extractor,
    cache: FeatureCache,
    classes: Sequence[str] = DEFAULT_CLASSES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> Pool:
    if not data:
        raise DatasetError("no dataset given: pass --data DIR (several times for several sources)")
    listed = list_sources(data, classes)
    rows = [
        (k, sample, file_sha256(sample.path))
        for k, (info, samples) in enumerate(listed)
        for sample in tqdm(samples, desc=f"hashing {info.name}", disable=not progress)
    ]
    failed = _fill_cache(rows, side, views, extract, cache, max_pixels, progress)
    for k, sample, digest in rows:
        if digest in failed:
            listed[k][0].skipped.append({"file": sample.name, **failed[digest]})
    ok = [row for row in rows if row[2] not in failed]
    digests = [d for _, _, d in ok]
    dups = find_duplicates(
        digests,
        [int(cache.table(HASH_VIEW)[d]) for d in digests],
        features=cache.stack("clean", digests) if ok else None,
    )
    names = [info.name for info, _ in listed]
    removed = [
        DuplicateRecord(
            source=names[ok[i][0]],
            file=ok[i][1].name,
            label=classes[ok[i][1].label],
            same_as=f"{names[ok[j][0]]}/{ok[j][1].name}",
            same_as_label=classes[ok[j][1].label],
            why=why,
        )
        for i, j, why in dups.removed
    ]
    cache.save()
    kept = [ok[i] for i in dups.keep]
    pool = _assemble(listed, kept, views, cache, tuple(classes), removed)
    check_every_class_present([s for _, s, _ in kept], tuple(classes), after_skipping=bool(failed))
    return pool


def _fill_cache(
    rows: list[Row],
    side: int,
    views: Sequence[str],
    extract: Extractor,
    cache: FeatureCache,
    max_pixels: int,
    progress: bool,
) -> Failures:
    """Decode what any view lacks, hash it, run the backbone; returns the undecodable files.
    The next batch decodes in a thread while the backbone runs on this one (Pillow releases
    the GIL), so decoding costs almost no wall time."""
    path_of = {d: s.path for _, s, d in rows}
    order = {d: i for i, d in enumerate(path_of)}
    lacking = set().union(*(cache.missing(v, list(path_of)) for v in (*views, HASH_VIEW)))
    todo = sorted(lacking, key=order.__getitem__)
    if not todo:
        return {}
    batches = [todo[i : i + BATCH] for i in range(0, len(todo), BATCH)]
    failed: Failures = {}
    bar = tqdm(
        total=len(todo), desc="decoding + extracting features", unit="img", disable=not progress
    )
    with bar, ThreadPoolExecutor(1, thread_name_prefix="decode") as decoder:
        pending = decoder.submit(_decode, batches[0], path_of, side, max_pixels)
        for k, batch in enumerate(batches):
            chunk, arrays, errors = pending.result()
            if k + 1 < len(batches):
                pending = decoder.submit(_decode, batches[k + 1], path_of, side, max_pixels)
            failed |= errors
            if chunk:
                images = np.stack(arrays)
                cache.put(HASH_VIEW, chunk, np.asarray([dhash(a) for a in images], dtype=np.uint64))
                for view in views:
                    cache.put(view, chunk, extract(images, view))
            bar.update(len(batch))
            if k and k % 16 == 0:
                cache.save()  # an interrupted run keeps what it computed
    return failed


def _decode(
    digests: list[str], path_of: dict[str, Path], side: int, max_pixels: int
) -> tuple[list[str], list[np.ndarray], Failures]:
    from kto.inference import InvalidImageError, decode_image

    chunk, arrays, failed = [], [], {}
    for digest in digests:
        try:
            arrays.append(decode_image(path_of[digest], size=(side, side), max_pixels=max_pixels))
            chunk.append(digest)
        except InvalidImageError as exc:
            failed[digest] = {"reason": exc.reason, "message": str(exc)}
    return chunk, arrays, failed


def _assemble(
    listed: list[tuple[SourceInfo, list[Sample]]],
    kept: list[Row],
    views: Sequence[str],
    cache: FeatureCache,
    classes: tuple[str, ...],
    removed: list[DuplicateRecord],
) -> Pool:
    source = [listed[k][0].name for k, _, _ in kept]
    parsed = [parse_wnid(Path(s.name).stem) for _, s, _ in kept]
    digests = [d for _, _, d in kept]
    pool = Pool(
        classes=classes,
        labels=np.asarray([s.label for _, s, _ in kept], dtype=np.int64),
        sources=np.asarray(source),
        names=[s.name for _, s, _ in kept],
        paths=[s.path for _, s, _ in kept],
        groups=[
            f"{src}:{p[0] if p else s.name}"
            for src, p, (_, s, _) in zip(source, parsed, kept, strict=True)
        ],
        kinds=[kind_of(*p) if p else None for p in parsed],
        digests=digests,
        features={v: cache.stack(v, digests).astype(np.float32) for v in views},
        source_info=[info for info, _ in listed],
        duplicates=removed,
    )
    for info in pool.source_info:
        info.used = int(np.sum(pool.sources == info.name))
    return pool


def describe(pool: Pool) -> DatasetReport:
    """The ``dataset`` section of metrics.json."""
    return DatasetReport(
        sources=[
            SourceReport(
                name=s.name,
                format=s.format,
                sha256=s.sha256,
                images_listed=s.listed,
                per_class_listed=s.per_class,
                images_used=s.used,
                per_class_used=pool.class_counts(pool.sources == s.name),
                skipped_count=len(s.skipped),
                skipped=s.skipped,
            )
            for s in pool.source_info
        ],
        images_used=len(pool),
        per_class=pool.class_counts(),
        duplicates_removed=len(pool.duplicates),
        duplicates=pool.duplicates,
    )
