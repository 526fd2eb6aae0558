"""`make train` in a clone without the shared folder says so before it installs TensorFlow."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cats_dogs_other.core.paths import REPO_ROOT

pytestmark = pytest.mark.process


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_make_train_looks_for_the_shared_folder_before_setup(tmp_path: Path) -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    train = next(line for line in makefile if line.startswith("train:"))
    assert train.split(":", 1)[1].split() == ["train-shared", "setup"]  # make runs them in order
    missing = tmp_path / "shared"
    refused = make("train-shared", f"SHARED={missing}")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0] == (
        f"make train: the shared folder {missing} does not exist: set SHARED=DIR or "
        "CDO_SHARED_DIR (docs/shared.md)"
    )
    missing.mkdir()
    assert make("train-shared", f"SHARED={missing}").returncode == 0


def test_sources_fetched_with_location_need_no_shared_folder(tmp_path: Path) -> None:
    remote = "TRAIN_ARGS=--location cats_dogs_other=https://example.org/course.zip"
    assert make("train-shared", f"SHARED={tmp_path / 'none'}", remote).returncode == 0
