"""The committed Bruno collection, run by the Bruno CLI against the running stack."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import REPO_ROOT, StackProcess

BRU = REPO_ROOT / "node_modules" / ".bin" / "bru"
COLLECTION = REPO_ROOT / "bruno"


def bruno_cli() -> Path:
    """Fail (not skip) when the CLI is missing: `make test` installs it with `npm ci`."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the Bruno CLI cannot run here")
    if not BRU.exists():
        pytest.fail(f"{BRU} is missing: run `make setup` (npm ci) first")
    return BRU


def assertion_results(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        outcome
        for iteration in report
        for result in iteration["results"]
        for outcome in result.get("assertionResults", []) + result.get("testResults", [])
    ]


def test_bruno_collection_passes_against_the_stack(stack: StackProcess, tmp_path: Path) -> None:
    bru = bruno_cli()
    report_path = tmp_path / "bruno.json"

    run = subprocess.run(
        [
            str(bru),
            "run",
            "--sandbox=developer",  # Node's crypto, to sign DPoP proofs (bruno/lib/dpop.js)
            "--env",
            "local",
            "--env-var",
            f"baseUrl={stack.api_url}",
            "--env-var",
            f"issuerUrl={stack.issuer_url}",
            "--reporter-json",
            str(report_path),
        ],
        cwd=COLLECTION,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(report_path.read_text())
    summaries = [iteration["summary"] for iteration in report]
    assert sum(s["totalRequests"] for s in summaries) == 9
    assert sum(s["failedRequests"] for s in summaries) == 0
    outcomes = assertion_results(report)
    assert len(outcomes) >= 24
    assert all(outcome["status"] == "pass" for outcome in outcomes), outcomes
    assert "✓ PASS" in run.stdout
