"""Collect out-of-distribution images from outside the training sources, to measure "Other" on
(:mod:`cats_dogs_other.train.ood` loads and measures them):

    python -m tools.ood_collect [--dest DIR] [--no-debian] [--seed N]

The training set's ``other`` class is landscapes only, but users upload people, food, vehicles,
objects and drawings. ``collect`` gathers such pictures from images that installed Python
packages and Debian packages ship (never from the training data), into a folder OUTSIDE the
repository, with a manifest naming each file's source.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cats_dogs_other.train.ood import IN_DISTRIBUTION_DIR, MANIFEST, set_hash
from cats_dogs_other.train.paths import default_ood_dir

log = logging.getLogger(__name__)

EXCLUDE_WORDS = ("cat", "dog", "kitten", "puppy", "chelsea")

# (python package holding the folder, folder inside it, file, category)
PYTHON_SOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("skimage", "data", "astronaut.png", "people"),
    ("skimage", "data", "camera.png", "people"),
    ("skimage", "data", "coffee.png", "food"),
    ("skimage", "data", "rocket.jpg", "vehicles"),
    ("skimage", "data", "motorcycle_left.png", "vehicles"),
    ("skimage", "data", "coins.png", "objects"),
    ("skimage", "data", "clock_motion.png", "objects"),
    ("skimage", "data", "color.png", "drawings"),
    ("skimage", "data", "logo.png", "drawings"),
    ("skimage", "data", "horse.png", "drawings"),
    ("skimage", "data", "chessboard_RGB.png", "drawings"),
    ("skimage", "data", "page.png", "text"),
    ("skimage", "data", "text.png", "text"),
    ("skimage", "data", "moon.png", "science"),
    ("skimage", "data", "hubble_deep_field.jpg", "science"),
    ("skimage", "data", "retina.jpg", "science"),
    ("skimage", "data", "ihc.png", "science"),
    ("skimage", "data", "cell.png", "science"),
    ("skimage", "data", "brick.png", "textures"),
    ("skimage", "data", "grass.png", "textures"),
    ("skimage", "data", "gravel.png", "textures"),
    ("sklearn", "datasets/images", "china.jpg", "buildings"),
    ("sklearn", "datasets/images", "flower.jpg", "plants"),
    ("matplotlib", "mpl-data/sample_data", "grace_hopper.jpg", "people"),
    ("matplotlib", "mpl-data/sample_data", "Minduka_Present_Blue_Pack.png", "objects"),
    ("matplotlib", "mpl-data/sample_data", "logo2.png", "drawings"),
)
# Known cats, kept apart: an extra in-distribution check, never counted as out-of-distribution.
PYTHON_IN_DISTRIBUTION = (("skimage", "data", "chelsea.png", "Cat"),)

# (Debian package, glob under the extracted tree, category, how many to pick)
DEBIAN_SOURCES: tuple[tuple[str, str, str, int], ...] = (
    ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/food/**/*.png", "food", 10),
    ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/vehicles/**/*.png", "vehicles", 8),
    ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/household/**/*.png", "objects", 5),
    ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/hobbies/**/*.png", "objects", 3),
    ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/clothes/**/*.png", "objects", 2),
    ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/people/**/*.png", "people", 2),
    ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/sports/**/*.png", "objects", 3),
    ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/town/monuments/*.png", "buildings", 3),
    ("tuxpaint-data", "usr/share/tuxpaint/starters/*.png", "drawings", 6),
)


def collect(dest: Path, *, debian: bool = True, seed: int = 0) -> dict[str, Any]:
    """(Re)build ``dest`` from the sources above and write its manifest; returns the manifest."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        if not (dest / MANIFEST).is_file():
            raise FileExistsError(
                f"{dest} exists and was not made by this command (no {MANIFEST}); "
                "choose an empty or new folder"
            )
        shutil.rmtree(dest)
    (dest / IN_DISTRIBUTION_DIR).mkdir(parents=True)
    entries: list[dict[str, Any]] = []
    for package, folder, filename, category in PYTHON_SOURCES:
        src = _python_file(package, folder, filename)
        if src is not None:
            entries.append(_store(src, dest, category, package, folder))
    in_dist = []
    for package, folder, filename, label in PYTHON_IN_DISTRIBUTION:
        src = _python_file(package, folder, filename)
        if src is not None:
            entry = _store(src, dest / IN_DISTRIBUTION_DIR, label, package, folder)
            in_dist.append({**entry, "expected": label})
    if debian:
        entries.extend(_collect_debian(dest, seed))
    manifest = {
        "description": "out-of-distribution images (not cats, not dogs) for cats_dogs_other",
        "images": entries,
        "in_distribution": in_dist,
        "sha256": set_hash(dest, [e["file"] for e in entries]),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _python_file(package: str, folder: str, filename: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        log.warning("OOD source skipped: Python package %s is not installed", package)
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder / filename
    if not path.is_file():
        log.warning("OOD source skipped: %s not found", path)
        return None
    return path


def _store(
    src: Path, dest_dir: Path, category: str, package: str, origin: str, version: str = ""
) -> dict[str, Any]:
    """Save as RGB PNG (transparency flattened on white, as an upload would be viewed)."""
    from kto.inference import decode_image
    from PIL import Image

    name = f"{category.lower()}__{package}__{src.stem}.png"
    source = f"debian:{package}={version}" if version else f"python:{package}"
    Image.fromarray(decode_image(src)).save(dest_dir / name)
    return {
        "file": name,
        "category": category,
        "source": source,
        "original": f"{origin}/{src.name}" if origin else src.name,
        "sha256": hashlib.sha256((dest_dir / name).read_bytes()).hexdigest(),
    }


def _collect_debian(dest: Path, seed: int) -> list[dict[str, Any]]:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        log.warning("OOD Debian sources skipped: apt-get/dpkg-deb not available")
        return []
    entries: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="cdo-ood-") as tmp:
        roots = {}
        for package in sorted({s[0] for s in DEBIAN_SOURCES}):
            unpacked = _download_deb(package, Path(tmp))
            if unpacked is not None:
                roots[package] = unpacked
        for package, pattern, category, count in DEBIAN_SOURCES:
            if package not in roots:
                continue
            root, version = roots[package]
            files = [f for f in sorted(root.glob(pattern)) if not _excluded(f.relative_to(root))]
            picked = sorted(rng.choice(len(files), size=min(count, len(files)), replace=False))
            for i in picked:
                src = files[int(i)]
                origin = str(src.parent.relative_to(root))
                entries.append(_store(src, dest, category, package, origin, version))
    return entries


def _download_deb(package: str, tmp: Path) -> tuple[Path, str] | None:
    """``apt-get download`` + ``dpkg-deb -x`` into a temporary folder (nothing is installed)."""
    work = tmp / package
    work.mkdir()
    try:
        subprocess.run(
            ["apt-get", "download", "-q", package], cwd=work, check=True, capture_output=True
        )
        deb = next(work.glob("*.deb"))
        version = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
    except (subprocess.CalledProcessError, StopIteration) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log.warning(
            "OOD source skipped: cannot fetch Debian package %s (%s); run `apt-get update` first?",
            package,
            detail.decode(errors="replace").strip()[-200:] or exc,
        )
        return None
    return work / "root", version


def _excluded(path: Path) -> bool:
    text = str(path).lower()
    return any(word in text for word in EXCLUDE_WORDS)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.ood_collect",
        description="Collect out-of-distribution images (people, food, vehicles, objects, "
        "drawings...) from pictures shipped by Python packages and Debian packages (apt-get "
        "download + dpkg-deb -x into a temporary folder; nothing is installed). Training "
        "measures them when they are in the default folder or --ood-dir.",
    )
    p.add_argument("--dest", type=Path, default=default_ood_dir(), help="default: %(default)s "
                   "($CDO_OOD_DIR, else $XDG_CACHE_HOME/cats_dogs_other/ood)")  # fmt: skip
    p.add_argument("--no-debian", action="store_true", help="Python packages' images only")
    p.add_argument("--seed", type=int, default=0, help="which Debian pictures are picked")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifest = collect(args.dest, debian=not args.no_debian, seed=args.seed)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(manifest['images'])} out-of-distribution images in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
