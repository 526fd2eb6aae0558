"""Fixtures for the checks of the shipping files (Dockerfile, workflows, devcontainer, manifests).

Light on purpose: YAML and JSON parsing only. The one heavy fixture (a replay of the image
build) lives in test_dockerfile.py and is marked slow.
"""

from __future__ import annotations

from typing import Any

import dockerfile
import pytest
import yaml

from tests.deploy.support import BASE_DIR, REPO_ROOT, by_kind, load_yaml_documents


@pytest.fixture(scope="session")
def base_objects() -> dict[str, dict[str, Any]]:
    """The base's objects as written (no kustomize needed)."""
    kustomization = yaml.safe_load((BASE_DIR / "kustomization.yaml").read_text())
    documents: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        documents += load_yaml_documents(BASE_DIR / resource)
    return by_kind(documents)


@pytest.fixture(scope="session")
def deployment(base_objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return base_objects["Deployment"]


@pytest.fixture(scope="session")
def api_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(scope="session")
def dockerfile_commands() -> tuple[dockerfile.Command, ...]:
    """The Dockerfile parsed by BuildKit's own parser (PyPI `dockerfile`)."""
    return dockerfile.parse_file(str(REPO_ROOT / "Dockerfile"))


@pytest.fixture(scope="session")
def final_stage(dockerfile_commands: tuple[dockerfile.Command, ...]) -> list[dockerfile.Command]:
    """The instructions of the last stage: what `docker run` gets."""
    starts = [i for i, command in enumerate(dockerfile_commands) if command.cmd == "FROM"]
    return list(dockerfile_commands[starts[-1] :])
