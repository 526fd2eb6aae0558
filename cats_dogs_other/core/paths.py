"""The repository's root, computed once: where the bundled model, caches and scripts are found."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
