"""The Codespaces definition: plain JSON, Python 3.11, set-up by make, the two ports labelled."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cats_dogs_other.api.settings import Settings
from cats_dogs_other.dev_issuer.settings import IssuerSettings
from tests.deploy.support import REPO_ROOT


@pytest.fixture(scope="module")
def devcontainer() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(
        (REPO_ROOT / ".devcontainer" / "devcontainer.json").read_text()
    )
    return config


def test_python_311_image_with_node_for_bruno(devcontainer: dict[str, Any]) -> None:
    assert re.search(r"python:\d+-3\.11-", devcontainer["image"])
    assert any(
        feature.startswith("ghcr.io/devcontainers/features/node:")
        for feature in devcontainer["features"]
    )


def test_creation_installs_what_make_run_needs_and_no_more(devcontainer: dict[str, Any]) -> None:
    # The first command in a Codespace is `make run`: creation (and a prebuild) installs the
    # stack, the file `make run` depends on; `make test` adds the rest (`make setup`) when asked.
    assert devcontainer["updateContentCommand"] == "make .venv/.stack"
    assert devcontainer["waitFor"] == "updateContentCommand"
    assert "postCreateCommand" not in devcontainer and "onCreateCommand" not in devcontainer
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^VENV := \.venv$", makefile, flags=re.MULTILINE)
    assert re.search(r"^run: \$\(VENV\)/\.stack$", makefile, flags=re.MULTILINE)
    assert re.search(r"^test: setup\b", makefile, flags=re.MULTILINE)


def test_api_and_issuer_ports_are_forwarded_with_labels(devcontainer: dict[str, Any]) -> None:
    api_port = Settings.model_fields["port"].default
    issuer_port = IssuerSettings.model_fields["port"].default
    assert devcontainer["forwardPorts"] == [api_port, issuer_port]
    labels = {int(port): attrs["label"] for port, attrs in devcontainer["portsAttributes"].items()}
    assert labels == {api_port: "API", issuer_port: "Dev issuer (Auth0-compatible)"}


def test_recommends_python_and_ruff(devcontainer: dict[str, Any]) -> None:
    extensions = devcontainer["customizations"]["vscode"]["extensions"]
    assert {"ms-python.python", "charliermarsh.ruff"} <= set(extensions)
