"""Every run writes a new model folder; only ``promote`` replaces the bundled default, as one
explicit step."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.paths import REPO_ROOT

BUNDLED_MODEL = REPO_ROOT / "cats_dogs_other" / "model"
REQUIRED_FILES = ("model.keras", "metadata.json", "MODEL_CARD.md", "metrics.json")


def new_version(now: datetime | None = None) -> str:
    """``2026.12.01.093000``: sorts by time, valid PEP 440, no characters a path dislikes."""
    return (now or datetime.now(UTC)).strftime("%Y.%m.%d.%H%M%S")


def default_out(name: str, version: str) -> Path:
    return REPO_ROOT / "models" / f"{name}-{version}"


def prepare_out(out: Path) -> Path:
    if out.resolve() == BUNDLED_MODEL.resolve():
        raise TrainingError(
            f"{out} is the bundled default model: training never overwrites it. Train into a "
            "new folder (leave --out out, or give another one), then promote it with "
            "`make promote MODEL=<folder>`"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainingError(
            f"{out} already exists and is not empty: every run writes a new model folder; "
            "choose another --out or --model-version"
        )
    return out


def promote(source: Path, target: Path = BUNDLED_MODEL) -> Path:
    """Check that ``source`` is complete and loads, then swap a copy of it in for ``target`` by
    renames: an interrupted promotion leaves the old or the new model, never a mix."""
    from kto.inference import Inference

    source, target = Path(source), Path(target)
    if not source.is_dir():
        raise TrainingError(f"{source} is not a model folder")
    if source.resolve() == target.resolve():
        raise TrainingError(f"{source} is already the bundled model")
    if missing := [f for f in REQUIRED_FILES if not (source / f).is_file()]:
        raise TrainingError(
            f"{source} is not a complete model folder: {', '.join(missing)} missing"
        )
    sha256 = Inference(source / "model.keras", warmup=False).sha256
    meta = json.loads((source / "metadata.json").read_text(encoding="utf-8"))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".promote-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the served folder must stay readable
    old = target.with_name(f".{target.name}.old")
    try:
        for item in filter(Path.is_file, source.iterdir()):
            shutil.copy2(item, staging / item.name)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"promoted {meta['name']} {meta['version']} ({sha256[:12]}) from {source} to {target}")
    return target
