"""``python boot.py`` refusing to start, as a real process: one sentence on stderr naming the
setting and the fix, the same as one JSON record on stdout, no traceback, no file written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cats_dogs_other.loopback import LOOPBACK, free_port
from cats_dogs_other.testing.issuer import AUDIENCE

LOCAL_ISSUER = f"http://{LOOPBACK}:9/"

pytestmark = pytest.mark.process  # every test runs boot.py


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def records(self) -> list[dict]:
        """Every stdout line, parsed: a line that is not JSON fails the test here."""
        return [json.loads(line) for line in self.stdout.splitlines()]

    @property
    def sentence(self) -> str:
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        return lines[0]


@pytest.fixture
def boot(repo_root: Path, tiny_model: Path, tmp_path: Path) -> Callable[..., Outcome]:
    """Run boot.py from an empty folder with a valid base environment plus ``env``."""

    def run(**env: str) -> Outcome:
        cwd = tmp_path / "cwd"
        cwd.mkdir(exist_ok=True)
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OAUTH2_", "MODEL_", "MLFLOW_", "LOG_LEVEL", "PORT", "HOST"))
        }
        base.update(
            OAUTH2_ISSUER=LOCAL_ISSUER,
            OAUTH2_AUDIENCE=AUDIENCE,
            MODEL_PATH=str(tiny_model),
            MODEL_CACHE_DIR=str(cwd / ".model-cache"),
            HOST=LOOPBACK,
            PORT=str(free_port()),
            TF_CPP_MIN_LOG_LEVEL="0",  # TensorFlow's C++ lines must become JSON too
        )
        base.update(env)
        base = {k: v for k, v in base.items() if v != "<unset>"}
        completed = subprocess.run(
            [sys.executable, str(repo_root / "boot.py")],
            cwd=cwd,
            env=base,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Outcome(completed.returncode, completed.stdout, completed.stderr, cwd)

    return run


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def assert_one_line_failure(outcome: Outcome, *names: str) -> str:
    """Non-zero, one sentence naming ``names``, the same in one JSON record, nothing else."""
    assert outcome.code != 0
    sentence = outcome.sentence
    assert sentence.startswith("cats-dogs-other API not started: ")
    for name in names:
        assert name in sentence
    assert "Traceback" not in outcome.stdout + outcome.stderr
    failures = [r for r in outcome.records if r.get("event") == "startup_failed"]
    assert len(failures) == 1, outcome.records
    assert failures[0]["level"] == "ERROR"
    assert sentence.endswith(failures[0]["message"])
    assert sorted(p.name for p in outcome.cwd.iterdir()) == []  # no mlflow.db, no cache
    return sentence


def write_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "not a keras model")
    return path


def test_a_missing_required_setting(boot: Callable[..., Outcome]) -> None:
    outcome = boot(OAUTH2_ISSUER="<unset>")
    sentence = assert_one_line_failure(outcome, "OAUTH2_ISSUER is required", "fix OAUTH2_ISSUER")
    assert outcome.code == 2
    assert "boot.py --help" in sentence


def test_an_out_of_range_setting(boot: Callable[..., Outcome]) -> None:
    assert_one_line_failure(boot(PORT="70000"), "PORT")


def test_a_missing_model(boot: Callable[..., Outcome], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.keras"
    sentence = assert_one_line_failure(boot(MODEL_PATH=str(missing)), "MODEL_PATH", str(missing))
    assert "does not exist" in sentence
    assert "python -m cats_dogs_other.train" in sentence


def test_int8_asked_for_without_the_int8_file(boot: Callable[..., Outcome]) -> None:
    sentence = assert_one_line_failure(
        boot(INFERENCE_PRECISION="int8"), "INFERENCE_PRECISION", "model.int8.onnx"
    )
    assert "unset INFERENCE_PRECISION" in sentence


def test_a_file_that_is_not_a_model(boot: Callable[..., Outcome], tmp_path: Path) -> None:
    fake = tmp_path / "model.keras"
    fake.write_bytes(b"<html>a download error page</html>")
    sentence = assert_one_line_failure(boot(MODEL_PATH=str(fake)), "MODEL_PATH")
    assert "is not a .keras model file" in sentence


def test_a_model_keras_cannot_load_fails_in_one_line_too(
    boot: Callable[..., Outcome], tmp_path: Path
) -> None:
    """Passes the quick checks (it is a zip), fails in the lifespan's real load."""
    broken = write_zip(tmp_path / "model.keras")
    outcome = boot(MODEL_PATH=str(broken))
    assert_one_line_failure(outcome, "MODEL_PATH", "cannot load Keras model")
    assert any(r["message"].startswith("Application startup failed") for r in outcome.records)


def test_a_deeply_nested_metadata_json_is_one_short_line(
    boot: Callable[..., Outcome], tiny_model: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    sentence = assert_one_line_failure(boot(MODEL_PATH=str(folder)), "MODEL_PATH", "metadata.json")
    assert "RecursionError" not in sentence and "nested too deeply" in sentence
    assert len(sentence) <= len("cats-dogs-other API not started: ") + 300


def test_a_malformed_model_uri_touches_nothing(boot: Callable[..., Outcome]) -> None:
    outcome = boot(MODEL_URI="models:/cats-dogs-other/Production", MLFLOW_TRACKING_URI="<unset>")
    assert_one_line_failure(outcome, "MODEL_URI", "the version must be a number")


def test_a_model_uri_without_tracking_server_creates_no_mlflow_db(
    boot: Callable[..., Outcome],
) -> None:
    outcome = boot(MODEL_URI="models:/cats-dogs-other/1", MLFLOW_TRACKING_URI="<unset>")
    assert_one_line_failure(outcome, "MLFLOW_TRACKING_URI", "http://")


def test_an_unreachable_mlflow_server(boot: Callable[..., Outcome]) -> None:
    outcome = boot(
        MODEL_URI="models:/cats-dogs-other/1",
        MLFLOW_TRACKING_URI=f"http://{LOOPBACK}:{free_port()}",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="2",
    )
    sentence = assert_one_line_failure(outcome, "MLFLOW_TRACKING_URI", "models:/cats-dogs-other/1")
    assert "127.0.0.1" in sentence


def test_a_port_in_use(boot: Callable[..., Outcome], busy_port: int) -> None:
    sentence = assert_one_line_failure(boot(PORT=str(busy_port)), "PORT", str(busy_port))
    assert "already in use" in sentence


def test_debug_logs_show_the_traceback(boot: Callable[..., Outcome], tmp_path: Path) -> None:
    outcome = boot(MODEL_PATH=str(tmp_path / "missing.keras"), LOG_LEVEL="DEBUG")
    assert outcome.code != 0
    assert "MODEL_PATH" in outcome.sentence
    (failure,) = [r for r in outcome.records if r.get("event") == "startup_failed"]
    assert "Traceback" in failure["exc_info"]


def test_a_trust_policy_rule_with_names_only(boot: Callable[..., Outcome], tmp_path: Path) -> None:
    policy = tmp_path / "trust.yml"
    policy.write_text(
        "issuers:\n  - name: gh\n    kind: github-actions\n"
        "    issuer: https://token.actions.githubusercontent.com\n"
        "    rules:\n      - repository: octo-org/octo-repo\n        scopes: [get::prediction]\n"
    )
    outcome = boot(TRUST_POLICY_FILE=str(policy))
    sentence = assert_one_line_failure(outcome, "TRUST_POLICY_FILE", "repository_id")
    assert outcome.code == 2
    assert "names are recycled" in sentence
