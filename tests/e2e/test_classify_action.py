"""The composite action's classify step, run as a runner runs it (`bash -eo pipefail`), against
the real stack.

The step's ``env`` mapping is evaluated from the action's inputs (only ``${{ inputs.* }}`` occurs
there), and its script runs with the runner's files (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY). The
install step is not run: it needs the package index; its client is the one `make setup` installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cats_dogs_other.testing.images import png
from tests.e2e.support import AUDIENCE, REPO_ROOT, StackProcess

ACTION = REPO_ROOT / ".github" / "actions" / "classify" / "action.yml"
INPUT = re.compile(r"^\$\{\{ inputs\.([\w-]+) \}\}$")


def run_classify_step(
    stack: StackProcess, workdir: Path, files: str, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    action = yaml.safe_load(ACTION.read_text())
    values = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    values.update(
        files=files,
        **{
            "api-url": stack.api_url,
            "issuer": stack.issuer_url,
            "audience": AUDIENCE,
            "client-id": "dev-client",
            "client-secret": "dev-secret",
        },
    )
    values.update(inputs)
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "classify")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDO_")}
    for name, expression in step["env"].items():
        match = INPUT.match(str(expression))
        env[name] = values[match.group(1)] if match else str(expression)

    runner_temp = workdir / "runner-temp"
    bin_dir = runner_temp / "cats-dogs-other-client" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "cats-dogs-other").symlink_to(Path(sys.executable).with_name("cats-dogs-other"))
    (bin_dir / "python").symlink_to(sys.executable)
    output, summary = workdir / "github-output", workdir / "step-summary"
    env.update(
        RUNNER_TEMP=str(runner_temp),
        GITHUB_OUTPUT=str(output),
        GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_RUN_ATTEMPT="1",
    )
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outputs = (
        dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        if output.exists()
        else {}
    )
    return result, outputs, summary.read_text() if summary.exists() else ""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    (images / "red.png").write_bytes(png((230, 20, 20)))
    (images / "green.png").write_bytes(png((20, 230, 20)))
    return tmp_path


def test_the_step_classifies_globbed_files_and_reports(stack: StackProcess, workdir) -> None:
    result, outputs, summary = run_classify_step(stack, workdir, "images/*.png", batch="true")

    assert result.returncode == 0, result.stderr
    answers = json.loads(Path(outputs["results"]).read_text())
    assert sorted(a["file"] for a in answers) == ["images/green.png", "images/red.png"]
    assert all(a["ok"] for a in answers)
    assert summary.startswith("| file | prediction | status |")
    assert summary.count("| ok |") == 2
    assert "dev-secret" not in result.stdout + result.stderr
    token_cache = workdir / "runner-temp" / "cats-dogs-other-token.json"
    assert token_cache.stat().st_mode & 0o077 == 0


def test_the_step_fails_when_an_image_fails(stack: StackProcess, workdir) -> None:
    (workdir / "images" / "notes.png").write_text("not an image")
    result, outputs, summary = run_classify_step(stack, workdir, "images/red.png\nimages/notes.png")

    assert result.returncode == 1
    answers = json.loads(Path(outputs["results"]).read_text())
    assert [a["ok"] for a in answers] == [True, False]
    assert summary.count("| ok |") == 1


def test_the_step_fails_when_nothing_matches(stack: StackProcess, workdir) -> None:
    result, _, _ = run_classify_step(stack, workdir, "nothing/*.jpg")
    assert result.returncode == 1
    assert "::error::no file matches" in result.stdout


def test_the_step_is_secretless_with_the_jobs_oidc_token(
    stack: StackProcess, workdir, monkeypatch
) -> None:
    """As in a job with `id-token: write`: the runner sets ACTIONS_ID_TOKEN_REQUEST_*, here
    pointing at the development issuer's GitHub stand-in, which `make run` trusts."""
    monkeypatch.setenv(
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        stack.issuer_url + "github-actions/idtoken?api-version=2.0",
    )
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "dev-actions-request-token")
    result, outputs, _ = run_classify_step(
        stack, workdir, "images/*.png", **{"client-id": "", "client-secret": "", "issuer": ""}
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(Path(outputs["results"]).read_text())
    assert all(a["ok"] for a in answers)
    assert not (workdir / "runner-temp" / "cats-dogs-other-token.json").exists()
