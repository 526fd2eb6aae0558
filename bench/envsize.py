"""Installed size of a serving environment, from the distributions installed here.

The size of a requirements file's install is the files of every distribution in its dependency
closure (each one's RECORD), as installed in this interpreter's environment: no new venv is
built. (c) is ``cats_dogs_other/api/requirements.txt``; (d), the TensorFlow backend, is the
same plus ``tensorflow-cpu`` and ``keras`` (what the API installed before the ONNX backend).
The interpreter itself is not counted. ``tests/deploy`` measures the real image venv.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from bench.workload import REPO_ROOT

API_REQUIREMENTS = REPO_ROOT / "cats_dogs_other" / "api" / "requirements.txt"
KERAS_EXTRA = ("tensorflow-cpu", "keras")
OPENVINO_EXTRA = ("openvino",)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_names(path: Path = API_REQUIREMENTS) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-") and (m := _NAME.match(line)):
            names.append(m.group(1))
    return names


def closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """Every installed distribution ``names`` need (markers evaluated, extras not followed)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        key = _key(todo.pop())
        if key in found:
            continue
        try:
            dist = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            continue
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def installed_mib(names: list[str]) -> float:
    total = 0
    for dist in closure(names).values():
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total / (1024 * 1024)


def serving_env_sizes() -> dict[str, float]:
    """MiB of (c)'s install (the API requirements), (d)'s (plus TensorFlow and Keras) and the
    OpenVINO row's (plus the wheel's ``openvino`` extra)."""
    api = requirement_names()
    return {
        "c": installed_mib(api),
        "d": installed_mib([*api, *KERAS_EXTRA]),
        "cov": installed_mib([*api, *OPENVINO_EXTRA]),
    }


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


if __name__ == "__main__":
    for system, mib in serving_env_sizes().items():
        print(f"({system}) {mib:.0f} MiB")
