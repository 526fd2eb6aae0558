"""The throwaway environment the libraries run in, rebuilt when compare/requirements.txt changes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements.txt")


def ensure_venv(path: Path, *, python: str = sys.executable) -> Path:
    """The environment's python, creating it and installing the pinned libraries if needed."""
    stamp = path / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    interpreter = path / "bin" / "python"
    if interpreter.exists() and stamp.exists() and stamp.read_text() == wanted:
        return interpreter
    print(f"compare: installing the libraries into {path} (once) ...", flush=True)
    subprocess.run([python, "-m", "venv", "--clear", str(path)], check=True)
    pip = [str(interpreter), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return interpreter


def pinned_version(package: str) -> str:
    """The version compare/requirements.txt pins for ``package``."""
    for line in REQUIREMENTS.read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package.lower():
            return version.strip()
    return "?"
