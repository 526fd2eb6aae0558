"""The ``cats-dogs-other`` command (packages/client) against the real stack, as a CI job runs it."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from kto.client import Classifier, ClientCredentials, DPoPAuth, DPoPKey, DPoPTokenRequestAuth
from kto.client.cli import discover_token_url

from cats_dogs_other.testing.images import png
from tests.e2e.support import AUDIENCE, CLASSES, REPO_ROOT, E2EModel, StackProcess

COMMAND = Path(sys.executable).with_name("cats-dogs-other")
SAMPLE = REPO_ROOT / "bruno" / "fixtures" / "cat.png"


def classify(
    stack: StackProcess,
    *args: str,
    secret: str = "dev-secret",  # noqa: S107 - the dev issuer's published secret
    client: str = "dev-client",
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDO_")}
    env.update(
        CDO_API_URL=stack.api_url,
        CDO_ISSUER=stack.issuer_url,
        CDO_CLIENT_ID=client,
        CDO_CLIENT_SECRET=secret,
        CDO_AUDIENCE=AUDIENCE,
    )
    return subprocess.run(
        [str(COMMAND), "classify", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def pictures(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "red.png", tmp_path / "blue.png"]
    paths[0].write_bytes(png((230, 20, 20)))
    paths[1].write_bytes(png((20, 20, 230)))
    return paths


def test_the_command_is_installed_by_make_setup() -> None:
    assert COMMAND.is_file(), "run `make setup`: it installs packages/client"


@pytest.mark.parametrize("mode", ["--no-batch", "--batch"])
def test_classify_files_as_json(
    stack: StackProcess, e2e_model: E2EModel, pictures: list[Path], mode: str
) -> None:
    result = classify(stack, mode, "--format", "json", str(SAMPLE), *map(str, pictures))

    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [a["file"] for a in answers] == [str(SAMPLE), *map(str, pictures)]
    for answer in answers:
        assert answer["ok"] is True and answer["status"] == 200
        assert answer["prediction"] in CLASSES and len(answer["values"]) == len(CLASSES)
    if e2e_model.red is not None:
        assert answers[1]["prediction"] == e2e_model.red


def test_table_output(stack: StackProcess, pictures: list[Path]) -> None:
    result = classify(stack, str(pictures[0]))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["FILE", "PREDICTION", "CONFIDENCE", "STATUS"]
    assert row.split()[0] == str(pictures[0]) and row.split()[-1] == "ok"


def test_a_file_that_is_not_an_image_fails_the_run(
    stack: StackProcess, pictures: list[Path], tmp_path: Path
) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = classify(stack, "--batch", "--format", "json", str(pictures[0]), str(text))

    assert result.returncode == 1
    good, bad = json.loads(result.stdout)
    assert good["ok"] is True
    assert bad["ok"] is False and bad["status"] in (415, 422) and bad["error"]


def test_a_wrong_secret_exits_3_with_one_line(stack: StackProcess, pictures: list[Path]) -> None:
    result = classify(stack, str(pictures[0]), secret="not-the-secret")
    assert result.returncode == 3
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "401" in result.stderr
    assert "not-the-secret" not in result.stderr


def test_a_client_without_the_scope_gets_403_per_image(
    stack: StackProcess, pictures: list[Path]
) -> None:
    result = classify(
        stack,
        "--format",
        "json",
        str(pictures[0]),
        client="no-scope-client",
        secret="no-scope-secret",
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)[0]["status"] == 403


def test_the_token_cache_file_is_private_and_reused(
    stack: StackProcess, pictures: list[Path], tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "token.json"
    assert classify(stack, "--token-cache", str(cache), str(pictures[0])).returncode == 0
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    written = cache.stat().st_mtime_ns
    assert "dev-secret" not in cache.read_text()

    assert classify(stack, "--token-cache", str(cache), str(pictures[1])).returncode == 0
    assert cache.stat().st_mtime_ns == written, "the second run asked for a new token"


def test_classify_with_dpop(stack: StackProcess, pictures: list[Path]) -> None:
    result = classify(stack, "--dpop", "--format", "json", *map(str, pictures))

    assert result.returncode == 0, result.stderr
    assert [a["ok"] for a in json.loads(result.stdout)] == [True, True]
    assert any(
        "issued token client_id=dev-client" in line and "dpop=True" in line for line in stack.lines
    )


def classify_in_process(
    stack: StackProcess, paths: list[Path]
) -> tuple[list[str], DPoPKey, ClientCredentials, list[tuple[int, str]]]:
    """The Python API with DPoP; also returns every upload answer as (status, challenge)."""
    answers: list[tuple[int, str]] = []

    def record(response: httpx.Response) -> None:
        if response.request.url.path == "/upload":
            answers.append((response.status_code, response.headers.get("WWW-Authenticate", "")))

    key = DPoPKey()
    with httpx.Client(timeout=30, event_hooks={"response": [record]}) as http:
        tokens = ClientCredentials(
            http,
            token_url=discover_token_url(http, stack.issuer_url),
            client_id="dev-client",
            client_secret="dev-secret",
            audience=AUDIENCE,
            token_request_auth=DPoPTokenRequestAuth(key),
        )
        results = Classifier(http, stack.api_url, DPoPAuth(tokens, key)).classify(paths)
    assert all(r.ok for r in results), [r.error for r in results]
    return [str(r.answer["prediction"]) for r in results], key, tokens, answers


def claims_of(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def test_the_python_client_gets_a_token_bound_to_its_key(
    stack: StackProcess, pictures: list[Path]
) -> None:
    predictions, key, tokens, answers = classify_in_process(stack, pictures)

    assert all(p in CLASSES for p in predictions)
    token = tokens.token()
    assert token.token_type == "DPoP" and tokens.requests_made == 1
    assert claims_of(token.value)["cnf"] == {"jkt": key.jkt}
    assert [status for status, _ in answers] == [200, 200]


def test_the_python_client_answers_the_api_nonce(
    nonce_stack: StackProcess, pictures: list[Path]
) -> None:
    _, _, tokens, answers = classify_in_process(nonce_stack, pictures)

    # The first upload is refused for want of a nonce and signed again with it; the second
    # upload uses the nonce the first answer carried.
    assert [status for status, _ in answers] == [401, 200, 200]
    assert 'error="use_dpop_nonce"' in answers[0][1]
    assert tokens.requests_made == 1


def test_the_command_answers_the_api_nonce(nonce_stack: StackProcess, pictures: list[Path]) -> None:
    result = classify(nonce_stack, "--dpop", "--format", "json", *map(str, pictures))

    assert result.returncode == 0, result.stderr
    assert [a["ok"] for a in json.loads(result.stdout)] == [True, True]
