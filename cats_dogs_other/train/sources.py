"""Several labelled sources (``--data`` repeated) as one pool of unique images with features,
each source named by its folder so every figure can be given per source. An image's group (the
unit a split never cuts) is its ImageNet class when its name starts with a WordNet id, so held-out
classes are wholly unseen, else the image itself. Duplicates go before any split (dedupe.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from kto.inference import DEFAULT_MAX_PIXELS, InvalidImageError, decode_image
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
BATCH = 32  # images decoded and passed through the backbone at a time
Failures = dict[str, dict[str, str]]  # content sha256 of an undecodable file -> why


@dataclass
class SourceInfo:
    name: str
    format: str
    sha256: str
    images_listed: int
    per_class_listed: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)


Row = tuple[SourceInfo, Sample, str]  # (its source, the sample, its content sha256)


@dataclass
class Pool:
    """Unique, decodable images of every source, in ``--data`` order, with their features."""

    classes: tuple[str, ...]
    labels: np.ndarray
    sources: np.ndarray
    names: list[str]
    paths: list[Path]
    groups: list[str]
    kinds: list[str | None]  # ImageNet kind (animals, objects...) of a WordNet-named image
    features: dict[str, np.ndarray]  # view ("clean", "flip", "aug1"...) -> (n, d) features
    source_info: list[SourceInfo]
    duplicates: list[DuplicateRecord]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.source_info]

    def class_counts(self, mask: np.ndarray | None = None) -> dict[str, int]:
        counts = Counter(int(i) for i in (self.labels if mask is None else self.labels[mask]))
        return {name: counts[i] for i, name in enumerate(self.classes)}


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
            format=fmt,
            sha256=dataset_sha256(samples, tuple(classes)),
            images_listed=len(samples),
            per_class_listed={c: counts[i] for i, c in enumerate(classes)},
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
    classes, listed = tuple(classes), list_sources(data, classes)
    rows = [
        (info, sample, file_sha256(sample.path))
        for info, samples in listed
        for sample in tqdm(samples, desc=f"hashing {info.name}", disable=not progress)
    ]
    path_of = {d: s.path for _, s, d in rows}
    failed = _fill_cache(
        path_of, views, extract, cache, side=side, max_pixels=max_pixels, progress=progress
    )
    for info, sample, digest in rows:
        if digest in failed:
            info.skipped.append({"file": sample.name, **failed[digest]})
    ok = [row for row in rows if row[2] not in failed]
    digests = [d for _, _, d in ok]
    hashes = [int(cache.table(HASH_VIEW)[d]) for d in digests]
    dups = find_duplicates(digests, hashes, features=cache.stack("clean", digests) if ok else None)
    removed = [_duplicate(ok[i], ok[j], why, classes) for i, j, why in dups.removed]
    cache.save()
    kept = [ok[i] for i in dups.keep]
    check_every_class_present([s for _, s, _ in kept], classes, after_skipping=bool(failed))
    parsed = [parse_wnid(Path(s.name).stem) for _, s, _ in kept]
    return Pool(
        classes=classes,
        labels=np.asarray([s.label for _, s, _ in kept], dtype=np.int64),
        sources=np.asarray([info.name for info, _, _ in kept]),
        names=[s.name for _, s, _ in kept],
        paths=[s.path for _, s, _ in kept],
        groups=[
            f"{i.name}:{p[0] if p else s.name}" for (i, s, _), p in zip(kept, parsed, strict=True)
        ],
        kinds=[kind_of(*p) if p else None for p in parsed],
        features={v: cache.stack(v, [d for _, _, d in kept]).astype(np.float32) for v in views},
        source_info=[info for info, _ in listed],
        duplicates=removed,
    )


def _duplicate(dropped: Row, kept: Row, why: str, classes: tuple[str, ...]) -> DuplicateRecord:
    return DuplicateRecord(
        source=dropped[0].name,
        file=dropped[1].name,
        label=classes[dropped[1].label],
        same_as=f"{kept[0].name}/{kept[1].name}",
        same_as_label=classes[kept[1].label],
        why=why,
    )


def _fill_cache(
    path_of: dict[str, Path],
    views: Sequence[str],
    extract: Extractor,
    cache: FeatureCache,
    *,
    side: int,
    max_pixels: int,
    progress: bool,
) -> Failures:
    """Decode what any view lacks, hash it, run the backbone; returns the undecodable files.
    The next batch decodes in a thread while the backbone runs on this one (Pillow releases
    the GIL), so decoding costs almost no wall time."""

    def decode(batch: list[tuple[str, Path]]) -> tuple[list[str], list[np.ndarray], Failures]:
        chunk, arrays, failed = [], [], {}
        for digest, path in batch:
            try:
                arrays.append(decode_image(path, size=(side, side), max_pixels=max_pixels))
                chunk.append(digest)
            except InvalidImageError as exc:
                failed[digest] = {"reason": exc.reason, "message": str(exc)}
        return chunk, arrays, failed

    lacking = set().union(*(cache.missing(v, list(path_of)) for v in (*views, HASH_VIEW)))
    todo = [(d, p) for d, p in path_of.items() if d in lacking]
    if not todo:
        return {}
    batches = [todo[i : i + BATCH] for i in range(0, len(todo), BATCH)]
    failed: Failures = {}
    desc = "decoding + extracting features"
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress)
    with bar, ThreadPoolExecutor(1, thread_name_prefix="decode") as decoder:
        ahead = [decoder.submit(decode, batches[0])]
        for k, batch in enumerate(batches):
            ahead += [decoder.submit(decode, b) for b in batches[k + 1 : k + 2]]
            chunk, arrays, errors = ahead.pop(0).result()
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


def describe(pool: Pool) -> DatasetReport:
    """The ``dataset`` section of metrics.json."""
    sources = []
    for s in pool.source_info:
        used = pool.class_counts(pool.sources == s.name)
        n = sum(used.values())
        report = SourceReport(
            **asdict(s), images_used=n, per_class_used=used, skipped_count=len(s.skipped)
        )
        sources.append(report)
    return DatasetReport(
        sources=sources,
        images_used=len(pool),
        per_class=pool.class_counts(),
        duplicates_removed=len(pool.duplicates),
        duplicates=pool.duplicates,
    )
