"""The kustomize tree: every reference resolves, every object validates offline against the
Kubernetes schemas (kubernetes-validate, strict), the overlays render, and the objects agree with
each other and with the app (routes, settings, shutdown time) where no schema can tell.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from cats_dogs_other.api.routes import health
from cats_dogs_other.api.settings import Settings, load_settings
from tests.deploy.support import (
    BASE_DIR,
    KUBERNETES_DIR,
    KUBERNETES_VERSIONS,
    OVERLAY_DIRS,
    REPO_ROOT,
    app_objects,
    by_kind,
    kustomize_build,
    load_yaml_documents,
    validate_object,
)

KUSTOMIZATION_DIRS = [BASE_DIR, *OVERLAY_DIRS]
# VmHWM of `python boot.py` serving the bundled model (model.onnx on ONNX Runtime) at the end of
# `python -m bench` (3 rounds at 1/8/32/64 connections), from /proc/PID/status: bench/results.
MEASURED_PEAK_RSS_MIB = 321
MANIFESTS = sorted(
    p
    for p in KUBERNETES_DIR.rglob("*.yaml")
    if p.name != "kustomization.yaml" and "kind" in yaml.safe_load(p.read_text())
)


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(KUBERNETES_DIR)) for p in paths]


@pytest.mark.parametrize("directory", KUSTOMIZATION_DIRS, ids=_ids(KUSTOMIZATION_DIRS))
def test_every_kustomization_reference_exists(directory: Path) -> None:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    references = list(kustomization.get("resources", []))
    references += list(kustomization.get("components", []))
    references += [patch["path"] for patch in kustomization.get("patches", []) if "path" in patch]
    assert references
    for reference in references:
        target = (directory / reference).resolve()
        assert target.is_file() or (target / "kustomization.yaml").is_file(), reference


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=_ids(MANIFESTS))
def test_manifest_validates_strictly(path: Path, version: str) -> None:
    for document in load_yaml_documents(path):
        validate_object(document, version)


@pytest.mark.parametrize("directory", KUSTOMIZATION_DIRS, ids=_ids(KUSTOMIZATION_DIRS))
def test_kustomization_renders_valid_objects(directory: Path) -> None:
    rendered = kustomize_build(directory)
    assert {d["kind"] for d in rendered} >= {"Deployment", "Service", "ConfigMap"}
    for document in rendered:
        for version in KUBERNETES_VERSIONS:
            validate_object(document, version)


def test_auth0_overlay_points_at_a_tenant_and_the_ghcr_image() -> None:
    objects = by_kind(kustomize_build(KUBERNETES_DIR / "overlays" / "auth0"))
    config = objects["ConfigMap"]["data"]
    assert config["OAUTH2_ISSUER"].startswith("https://")
    assert config["OAUTH2_ISSUER"].endswith(".auth0.com/"), "Auth0's iss has a trailing slash"
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/")


def test_openshift_overlay_leaves_the_uid_to_the_scc_but_stays_non_root() -> None:
    objects = by_kind(kustomize_build(KUBERNETES_DIR / "overlays" / "openshift"))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for context in (pod["securityContext"], container["securityContext"]):
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context)
        assert context["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("directory", KUSTOMIZATION_DIRS, ids=_ids(KUSTOMIZATION_DIRS))
def test_configmap_is_settings_the_app_accepts(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each key is a setting (no silently ignored typo) and the values load as-is."""
    config = by_kind(app_objects(kustomize_build(directory)))["ConfigMap"]["data"]
    unknown = {key for key in config if key.lower() not in Settings.model_fields}
    assert not unknown, f"keys the server would ignore: {sorted(unknown)}"
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.model_path.is_absolute()
    assert settings.port == 8080


def test_pod_is_locked_down(deployment: dict[str, Any], api_container: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    security = api_container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # With a read-only root, every write must land on the /tmp emptyDir.
    (mount,) = api_container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert mount["mountPath"] == "/tmp" and mount["name"] == volume["name"]
    assert "emptyDir" in volume
    env = {item["name"]: item.get("value") for item in api_container["env"]}
    for name in ("HOME", "KERAS_HOME", "MODEL_CACHE_DIR"):
        assert env[name].startswith("/tmp"), name


def test_probes_use_routes_the_app_serves(api_container: dict[str, Any]) -> None:
    served = {route.path for route in health.router.routes}  # type: ignore[attr-defined]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert api_container[probe]["httpGet"]["path"] in served, probe
        assert api_container[probe]["httpGet"]["port"] == api_container["ports"][0]["name"]
    assert api_container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api_container["livenessProbe"]["httpGet"]["path"] == "/health"
    startup = api_container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert 120 <= budget <= 180, f"model-load budget {budget} s, expected 2-3 minutes"


def test_grace_period_outlasts_the_servers_graceful_shutdown(
    deployment: dict[str, Any], api_container: dict[str, Any]
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    pre_stop = api_container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
    needed = pre_stop.get("seconds", 0) + _uvicorn_graceful_timeout()
    assert pod["terminationGracePeriodSeconds"] > needed


def test_resources_fit_the_measured_footprint(
    api_container: dict[str, Any], base_objects: dict[str, dict[str, Any]]
) -> None:
    resources = api_container["resources"]
    cpu_limit = _cpu(resources["limits"]["cpu"])
    assert 1 <= _cpu(resources["requests"]["cpu"]) <= cpu_limit <= 2
    request = _bytes(resources["requests"]["memory"])
    assert request >= MEASURED_PEAK_RSS_MIB * 2**20 * 1.2, "request below the measured peak"
    assert _bytes(resources["limits"]["memory"]) >= 1.5 * request
    # The thread plan reads the CPU limit from the pod's cgroup: no pinned thread counts that
    # would go stale when the limit changes.
    config = base_objects["ConfigMap"]["data"]
    for threads in ("INFERENCE_THREADS", "DECODE_THREADS"):
        assert threads not in config, threads


def test_service_hpa_and_pdb_select_the_deployment(
    base_objects: dict[str, dict[str, Any]], deployment: dict[str, Any]
) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = base_objects["Service"]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert service["ports"][0]["targetPort"] == container["ports"][0]["name"]
    pdb = base_objects["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = base_objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= 2, "one replica cannot survive a disruption"
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    config_name = base_objects["ConfigMap"]["metadata"]["name"]
    assert container["envFrom"][0]["configMapRef"]["name"] == config_name


def _uvicorn_graceful_timeout() -> float:
    """`timeout_graceful_shutdown=` in boot.py: a literal, or a setting's default."""
    tree = ast.parse((REPO_ROOT / "boot.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "timeout_graceful_shutdown":
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, int | float):
                return float(node.value.value)
            if isinstance(node.value, ast.Attribute):
                return float(Settings.model_fields[node.value.attr].default)
    raise AssertionError("boot.py sets no timeout_graceful_shutdown: shutdown would be unbounded")


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)
