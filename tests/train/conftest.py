"""Generated datasets (coloured images) in both supported layouts, and the shared-data paths."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cats_dogs_other.train import paths
from cats_dogs_other.train.feature_cache import FeatureCache
from cats_dogs_other.train.results import Metrics
from cats_dogs_other.train.sources import Pool, build_pool
from cats_dogs_other.train.versions import BUNDLED_MODEL

from .archives import ArchiveServer, file_sha256, list_sha256, pack_tar, pack_zip, write_manifest

# Train options that make a run take seconds: the random tiny backbone on 32 px images.
TINY = ["--backbone", "tiny", "--input-size", "32", "--quiet", "--epochs", "40"]
TINY += ["--learning-rate", "0.01", "--patience", "40", "--batch-size", "32", "--no-refit"]

# Cat = mostly red, Dog = mostly green, Other = mostly blue: a random tiny network separates them.
COLOURS = {"cat": (200, 40, 40), "dog": (40, 190, 50), "other": (40, 60, 200)}


def make_images(root: Path, per_class: int, *, seed: int = 0) -> dict[str, list[str]]:
    """Noisy coloured PNGs of assorted sizes in ``root``; returns file names per label."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {}
    for label, rgb in COLOURS.items():
        names[label] = []
        for i in range(per_class):
            h, w = int(rng.integers(30, 60)), int(rng.integers(30, 60))
            noise = rng.normal(0, 25, (h, w, 3))
            pixels = np.clip(np.asarray(rgb) + noise, 0, 255).astype(np.uint8)
            name = f"{label}_{i:02d}.png"
            Image.fromarray(pixels).save(root / name)
            names[label].append(name)
    return names


def write_ecotag(root: Path, per_class: int = 12, *, seed: int = 0) -> Path:
    """An Ecotag export (annotations JSON + extract/ folder), as the labelling tool writes it."""
    names = make_images(root / "extract", per_class, seed=seed)
    annotations = [
        {"nameIdentifier": "1", "fileName": n, "annotation": {"label": label}}
        for label, files in names.items()
        for n in files
    ]
    doc = {"projectName": "generated", "projectType": "ImageClassifier", "annotations": annotations}
    (root / "generated-annotations.json").write_text(json.dumps(doc), encoding="utf-8")
    return root


def write_folders(root: Path, per_class: int = 12, *, seed: int = 0) -> Path:
    """One folder per class (capitalised folder names: matching is case-insensitive)."""
    for label in COLOURS:
        tmp = root / "_tmp"
        names = make_images(tmp, per_class, seed=seed)[label]
        target = root / label.capitalize()
        target.mkdir(parents=True)
        for n in names:
            (tmp / n).rename(target / n)
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    return root


class CountingExtractor:
    """Mean colour per view: enough to tell the classes apart; counts what it computes."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images: np.ndarray, view: str) -> np.ndarray:
        self.images += len(images) if view == "clean" else 0
        x = images[:, :, ::-1] if view == "flip" else images
        return x.reshape(len(x), -1, 3).mean(axis=1).astype(np.float32)


def pool_of(tmp_path: Path, *sources: Path) -> Pool:
    """The sources as the pipeline pools them (decoded at 16x16, mean-colour features)."""
    cache = FeatureCache(tmp_path / "pool-cache", "k")
    return build_pool(
        list(sources),
        side=16,
        views=("clean", "flip"),
        extract=CountingExtractor(),
        cache=cache,
        progress=False,
    )


@pytest.fixture
def ecotag_dir(tmp_path: Path) -> Path:
    return write_ecotag(tmp_path / "ecotag")


@pytest.fixture
def folders_dir(tmp_path: Path) -> Path:
    return write_folders(tmp_path / "folders")


@pytest.fixture(scope="session")
def shared_data() -> tuple[Path, Path]:
    data, weights = paths.default_data_dir(), paths.default_weights()
    if not data.is_dir() or not weights.is_file():
        pytest.skip(
            f"shared dataset/weights not found ({data}, {weights}): they live beside the "
            "repository in ../shared (or $CDO_SHARED_DIR) and are never copied into it"
        )
    return data, weights


@pytest.fixture(scope="session")
def bundled_metrics() -> Metrics:
    """The committed default model's metrics.json, as the typed record the pipeline makes."""
    return Metrics.from_json(json.loads((BUNDLED_MODEL / "metrics.json").read_text()))


@pytest.fixture(autouse=True)
def _no_ambient_tracking(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's MLFLOW_TRACKING_URI must not make tests log to a real server, nor may
    tests fill the repository's feature cache or see the developer's OOD images."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CDO_CACHE_DIR", str(tmp_path / "feature-cache"))
    monkeypatch.setenv("CDO_OOD_DIR", str(tmp_path / "no-ood"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_imagenet_like(root: Path, per_class: int = 10) -> Path:
    """dog/ and other/ folders, one file per "ImageNet class" (WordNet id names), no cats."""
    names = make_images(root / "_tmp", per_class, seed=3)
    for label, folder, base in (("dog", "dog", 2085000), ("other", "other", 3000000)):
        (root / folder).mkdir(parents=True)
        for i, n in enumerate(names[label]):
            shutil.move(str(root / "_tmp" / n), root / folder / f"n0{base + i}_thing_{i}.png")
    shutil.rmtree(root / "_tmp")
    return root


@pytest.fixture(scope="session")
def archive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveServer]:
    with ArchiveServer(tmp_path_factory.mktemp("served")) as server:
        yield server


@pytest.fixture(scope="session")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An Ecotag export and a folders source, with duplicates across them."""
    root = tmp_path_factory.mktemp("sources")
    course = write_ecotag(root / "course", per_class=12)
    imagenet = write_imagenet_like(root / "imagenet")
    # a byte-identical copy and a re-encoded, resized copy of course images: both must go
    shutil.copy(course / "extract" / "dog_03.png", imagenet / "dog" / "n02099999_copy.png")
    with Image.open(course / "extract" / "other_04.png") as img:
        img.resize((img.width * 2, img.height * 2)).save(imagenet / "other" / "n04999999_big.jpg")
    return course, imagenet


@dataclass(frozen=True)
class PipelineRun:
    out: Path
    manifest: Path
    sources: tuple[Path, Path]
    shared: Path
    dataset_cache: Path


@pytest.fixture(scope="session")
def pipeline_run(
    two_sources: tuple[Path, Path],
    archive_server: ArchiveServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> PipelineRun:
    """The session's one tiny-backbone training run, through the real CLI: both sources fetched
    as archives (a .tar.gz and a .zip) from the loopback server through a dataset manifest."""
    from cats_dogs_other.train.cli import main

    root = tmp_path_factory.mktemp("pipeline")
    course, imagenet = two_sources
    tar = pack_tar(course, archive_server.root / "course.tar.gz")
    pack_zip(imagenet, archive_server.root / "imagenet.zip")
    shared = root / "shared"
    (shared / "weights").mkdir(parents=True)
    (shared / "weights" / "tiny.weights.h5").write_bytes(b"the tiny backbone needs none")
    sources = [
        {"name": "course", "format": "ecotag", "location": archive_server.url(tar.name),
         "sha256": list_sha256(course), "archive_sha256": file_sha256(tar)},
        {"name": "imagenet", "format": "folders", "location": archive_server.url("imagenet.zip"),
         "sha256": list_sha256(imagenet)},
    ]  # fmt: skip
    manifest = write_manifest(root / "manifest.json", sources, shared, "weights/tiny.weights.h5")
    out, cache = root / "model", root / "dataset-cache"
    argv = ["--manifest", str(manifest), "--shared", str(shared), "--dataset-cache", str(cache)]
    argv += ["--out", str(out), "--cv-folds", "3", "--cache-dir", str(root / "cache"), "--no-ood"]
    argv += ["--model-version", "3.1.4", "--hidden", "0", "--weighting", "none,class"]
    assert main([*argv, "--no-tracking", *TINY]) == 0
    return PipelineRun(out, manifest, two_sources, shared, cache)


@pytest.fixture(scope="session")
def trained(pipeline_run: PipelineRun) -> Path:
    """The model folder of the session's training run (never modified by a test)."""
    return pipeline_run.out
