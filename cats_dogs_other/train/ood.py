"""Out-of-distribution images: collect them, and calibrate the "not sure -> Other" rule on them.

The training set's ``other`` class is landscapes only, but users upload people, food, vehicles,
objects and drawings. ``collect`` gathers such pictures from images that installed Python
packages and Debian packages ship (never from the training data), into a folder OUTSIDE the
repository, with a manifest naming each file's source; ``python -m cats_dogs_other.train ood``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
IN_DISTRIBUTION_DIR = "in_distribution"
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


@dataclass
class OODSet:
    images: np.ndarray
    names: list[str]
    categories: list[str]
    calibration: np.ndarray
    """Boolean mask: images used to choose the threshold; the rest only measure it."""
    sha256: str
    in_distribution: list[tuple[str, np.ndarray, str]]
    """(name, image, expected class) of known cats/dogs found by the collector."""


# --------------------------------------------------------------------------- collection
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
        "sha256": _set_hash(dest, [e["file"] for e in entries]),
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


def _set_hash(directory: Path, files: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(
            f"{name}\0{hashlib.sha256((directory / name).read_bytes()).hexdigest()}\n".encode()
        )
    return digest.hexdigest()


# --------------------------------------------------------------------------- loading
def load_ood(directory: Path, size: tuple[int, int], *, seed: int = 0) -> OODSet:
    """Decode a collected folder; half of each category (seeded) is kept for calibration."""
    from kto.inference import decode_image

    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entries = manifest["images"]
        in_dist_entries = manifest.get("in_distribution", [])
    else:  # a plain folder of images a person gathered: category from the name prefix
        entries = [
            {"file": p.name, "category": p.name.split("__")[0] if "__" in p.name else "unknown"}
            for p in sorted(directory.iterdir())
            if p.is_file() and p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
        ]
        in_dist_entries = []
    if not entries:
        raise FileNotFoundError(f"no out-of-distribution images in {directory}")
    names = [e["file"] for e in entries]
    images = np.stack([decode_image(directory / n, size=size) for n in names])
    categories = [e["category"] for e in entries]
    in_dist = [
        (
            e["file"],
            decode_image(directory / IN_DISTRIBUTION_DIR / e["file"], size=size),
            e["expected"],
        )
        for e in in_dist_entries
    ]
    return OODSet(
        images=images,
        names=names,
        categories=categories,
        calibration=_calibration_mask(categories, seed),
        sha256=_set_hash(directory, names),
        in_distribution=in_dist,
    )


def _calibration_mask(categories: Sequence[str], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(categories), dtype=bool)
    cats = np.asarray(categories)
    for category in sorted(set(categories)):
        idx = rng.permutation(np.flatnonzero(cats == category))
        mask[idx[: (len(idx) + 1) // 2]] = True
    return mask


# --------------------------------------------------------------------------- calibration
def calibrate_rule(
    decide: Callable[[float], tuple[np.ndarray, np.ndarray]],
    candidates: np.ndarray,
    id_labels: np.ndarray,
    fallback: int,
    *,
    max_id_accuracy_loss: float = 0.0,
) -> tuple[float | None, dict[str, Any]]:
    """The threshold ``t`` (among ``candidates``, ascending) that sends the most OOD images to
    ``fallback`` while in-distribution accuracy drops by at most ``max_id_accuracy_loss``;
    ``None`` when no threshold helps. ``decide(t)`` returns (in-distribution, OOD) answers, and
    ``decide(0)`` must be the answers without the rule.
    """

    def rates(t: float) -> tuple[float, float]:
        id_pred, ood_pred = decide(t)
        return float(np.mean(id_pred == id_labels)), float(np.mean(ood_pred == fallback))

    base_id, base_ood = rates(0.0)
    best_t, best = 0.0, (base_ood, base_id)
    for t in candidates:
        id_acc, ood_rate = rates(float(t))
        if id_acc >= base_id - max_id_accuracy_loss - 1e-9 and (ood_rate, id_acc) > best:
            best_t, best = float(t), (ood_rate, id_acc)
    chosen = round(best_t, 4) if best_t > 0 and best[0] > base_ood else None
    return chosen, {
        "in_distribution_accuracy_without_rule": round(base_id, 4),
        "in_distribution_accuracy_with_rule": round(best[1] if chosen else base_id, 4),
        "ood_other_rate_without_rule": round(base_ood, 4),
        "ood_other_rate_with_rule": round(best[0] if chosen else base_ood, 4),
        "n_in_distribution": len(id_labels),
        "max_in_distribution_accuracy_loss": max_id_accuracy_loss,
    }


def midpoints(*scores: np.ndarray) -> np.ndarray:
    """Candidate thresholds: halfway between consecutive distinct observed scores."""
    levels = np.unique(np.concatenate([*scores, [0.0, 1.0]]))
    return (levels[:-1] + levels[1:]) / 2


def calibrate_threshold(
    id_probs: np.ndarray,
    id_labels: np.ndarray,
    ood_probs: np.ndarray,
    fallback: int,
    *,
    max_id_accuracy_loss: float = 0.0,
) -> tuple[float | None, dict[str, Any]]:
    """``min_confidence`` (the wheel's rule): below the threshold the answer is ``fallback``."""
    threshold, details = calibrate_rule(
        lambda t: (_decide(id_probs, t, fallback), _decide(ood_probs, t, fallback)),
        midpoints(id_probs.max(axis=1), ood_probs.max(axis=1)),
        id_labels,
        fallback,
        max_id_accuracy_loss=max_id_accuracy_loss,
    )
    return threshold, details | {"n_ood": len(ood_probs)}


def _decide(probs: np.ndarray, threshold: float, fallback: int) -> np.ndarray:
    pred = np.argmax(probs, axis=1)
    return np.where(probs.max(axis=1) < threshold, fallback, pred)


def ood_report(
    ood: OODSet,
    plain_probs: np.ndarray,
    served_probs: np.ndarray,
    classes: Sequence[str],
    threshold: float | None,
    fallback: int,
    similarity: np.ndarray | None = None,
) -> dict[str, Any]:
    """How often OOD images come out as ``fallback`` (Other): with the classifier alone
    ("without rule") and as served (novelty gate in the model + min_confidence, "with rule").
    """
    plain = np.argmax(plain_probs, axis=1)
    served = _decide(served_probs, threshold or 0.0, fallback)

    def rate(pred: np.ndarray, mask: np.ndarray) -> float | None:
        return round(float(np.mean(pred[mask] == fallback)), 4) if mask.any() else None

    def summary(mask: np.ndarray) -> dict[str, Any]:
        return {
            "n": int(mask.sum()),
            "other_rate_without_rule": rate(plain, mask),
            "other_rate_with_rule": rate(served, mask),
            "predicted": {c: int(np.sum(served[mask] == i)) for i, c in enumerate(classes)},
        }

    cats = np.asarray(ood.categories)
    images = []
    for i, (name, cat, cal) in enumerate(
        zip(ood.names, ood.categories, ood.calibration, strict=True)
    ):
        entry = {
            "file": name,
            "category": cat,
            "used_for": "calibration" if cal else "held_out",
            "prediction": classes[int(served[i])],
            "confidence": round(float(served_probs[i].max()), 4),
            "classifier_alone": classes[int(plain[i])],
        }
        if similarity is not None:
            entry["nearest_training_similarity"] = round(float(similarity[i]), 4)
        images.append(entry)
    return {
        "sha256": ood.sha256,
        "held_out": summary(~ood.calibration),
        "calibration": summary(ood.calibration),
        "all": summary(np.ones(len(cats), dtype=bool)),
        "per_category": {c: summary(cats == c) for c in sorted(set(ood.categories))},
        "images": images,
    }
