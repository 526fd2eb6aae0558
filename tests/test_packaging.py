"""pyproject.toml's extras and the pinned requirements files name the same packages.

The extras (ranges) are how the application is installed as a package; the requirements files
(exact pins) are the lock that `make setup`, CI and the Docker image install. A package added to
one and not the other would make the two installs differ.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import distribution
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from cats_dogs_other.core.paths import REPO_ROOT

PROJECT = "cats-dogs-other"
LOCKS = {
    "api": ["cats_dogs_other/api/requirements.txt"],
    "stack": [
        "cats_dogs_other/api/requirements.txt",
        "cats_dogs_other/dev_issuer/requirements.txt",
    ],
    "train": ["cats_dogs_other/train/requirements.txt"],
    "dev": ["requirements.txt"],
}
# Pinned in the lock for reproducibility though no extra asks for them: openvino's own dependency.
TRANSITIVE_PINS = {"openvino-telemetry"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path) -> set[str]:
    """Package names pinned by a requirements file, following its ``-r`` includes."""
    names: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= pinned(REPO_ROOT / line[2:].strip())
        elif "==" in line:
            names.add(canonical(line.split("==")[0].split("[")[0]))
    return names


def extra(extras: dict[str, list[str]], name: str) -> set[str]:
    """Package names an extra asks for, its references to other extras of the project resolved."""
    names: set[str] = set()
    for requirement in extras[name]:
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?", requirement)
        assert match, requirement
        package, wanted = canonical(match[1]), match[2]
        if package == PROJECT:
            for other in (wanted or "").split(","):
                names |= extra(extras, other.strip())
        else:
            names.add(package)
    return names


@pytest.fixture(scope="module")
def extras() -> dict[str, list[str]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert canonical(project["name"]) == PROJECT
    optional: dict[str, list[str]] = project["optional-dependencies"]
    return optional


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_each_extra_names_what_its_requirements_pin(
    extras: dict[str, list[str]], name: str
) -> None:
    locked = set().union(*(pinned(REPO_ROOT / path) for path in LOCKS[name]))
    assert extra(extras, name) == locked - TRANSITIVE_PINS


def test_only_the_stack_brings_the_development_issuers_authlib(
    extras: dict[str, list[str]],
) -> None:
    assert "authlib" not in extra(extras, "api")
    assert "authlib" in extra(extras, "stack")


def test_the_application_is_installed_editable_not_put_on_the_path_by_pytest() -> None:
    # `make setup` and `make run` install this checkout (`pip install --no-deps -e .`); that
    # install, not a pytest `pythonpath`, is what lets tests.support, tools and bench import.
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "pythonpath" not in config["tool"]["pytest"]["ini_options"]
    direct_url = json.loads(distribution(PROJECT).read_text("direct_url.json") or "{}")
    assert direct_url.get("dir_info", {}).get("editable") is True
    assert Path(url2pathname(urlparse(direct_url["url"]).path)).resolve() == REPO_ROOT
