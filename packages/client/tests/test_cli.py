"""The ``classify`` command end to end over httpx.MockTransport: retries, batches, output, exit
codes, and that the token is fetched once for many images."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from kto.client.api import parse_retry_after
from kto.client.cli import EXIT_AUTH, EXIT_FAILED_IMAGE, EXIT_OK, EXIT_USAGE


def test_many_images_one_token_json_output(run, servers, images) -> None:
    paths = images("a.png", "b.jpg", "c.png")
    code, out, _, _ = run("--format", "json", *map(str, paths))

    assert code == EXIT_OK
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(p) for p in paths]
    assert all(r["ok"] and r["status"] == 200 and r["prediction"] == "Cat" for r in results)
    assert servers.count("/oauth/token") == 1 and servers.count("/upload") == 3
    uploads = [r for r in servers.requests if r.url.path == "/upload"]
    assert b'filename="b.jpg"' in uploads[1].content
    assert b"Content-Type: image/jpeg" in uploads[1].content


def test_table_output_names_each_file(run, images) -> None:
    code, out, _, _ = run(*map(str, images("a.png")))
    header, row = out.splitlines()
    assert code == EXIT_OK
    assert header.split() == ["FILE", "PREDICTION", "CONFIDENCE", "STATUS"]
    assert row.split()[1:] == ["Cat", "0.900", "ok"]


def test_a_bad_image_fails_the_run_but_not_the_others(run, images) -> None:
    paths = images("a.png", bad="notes.png")
    code, out, _, _ = run("--format", "json", *map(str, paths))

    assert code == EXIT_FAILED_IMAGE
    good, bad = json.loads(out)
    assert good["ok"] is True
    assert bad == {
        "file": str(paths[1]),
        "ok": False,
        "status": 415,
        "error": "The file is not a PNG or JPEG image.",
    }


def test_a_missing_file_fails_without_a_request(run, servers, tmp_path) -> None:
    code, out, _, _ = run("--format", "json", str(tmp_path / "absent.png"))
    assert code == EXIT_FAILED_IMAGE
    assert json.loads(out)[0]["error"].startswith("cannot read")
    assert servers.count("/upload") == 0


def test_503_is_retried_as_retry_after_says(run, servers, images) -> None:
    servers.busy = ["2", None, "7"]
    code, _, _, sleeps = run(*map(str, images("a.png")))
    assert code == EXIT_OK
    assert sleeps == [2.0, 2.0, 7.0]  # Retry-After, else 2**(attempt-1), then Retry-After
    assert servers.count("/upload") == 4


def test_connection_errors_are_retried_then_reported(run, servers, images) -> None:
    servers.unreachable = 1
    assert run(*map(str, images("a.png")))[0] == EXIT_OK

    servers.unreachable = 10
    code, out, _, sleeps = run("--format", "json", *map(str, images("b.png")))
    assert code == EXIT_FAILED_IMAGE
    assert sleeps == [1.0, 2.0, 4.0]
    (result,) = json.loads(out)
    assert result["status"] is None and result["error"].startswith("ConnectError")


def test_retries_are_bounded_in_number_and_wait(run, servers, images) -> None:
    servers.busy = ["3600"] * 10
    code, out, _, sleeps = run("--format", "json", "--attempts", "3", *map(str, images("a.png")))
    assert code == EXIT_FAILED_IMAGE
    assert sleeps == [30.0, 30.0]  # capped by --max-retry-wait (default 30 s)
    assert json.loads(out)[0]["status"] == 503
    assert servers.count("/upload") == 3


def test_batch_mode_sends_batch_size_files_per_call(run, servers, images) -> None:
    paths = images("a.png", "b.png", "c.png", "d.png", "e.png")
    code, out, _, _ = run("--batch", "--batch-size", "2", "--format", "json", *map(str, paths))
    assert code == EXIT_OK
    assert len(json.loads(out)) == 5
    assert servers.count("/upload/batch") == 3
    assert servers.count("/oauth/token") == 1


def test_one_bad_image_in_a_batch_is_found_by_sending_each_alone(run, servers, images) -> None:
    paths = images("a.png", "b.png", bad="c.png")
    code, out, _, _ = run("--batch", "--format", "json", *map(str, paths))
    assert code == EXIT_FAILED_IMAGE
    assert [r["ok"] for r in json.loads(out)] == [True, True, False]
    assert servers.count("/upload/batch") == 1 and servers.count("/upload") == 3


def test_a_token_refused_by_the_api_is_renewed_once(run, servers, images) -> None:
    servers.revoked.add("token-1")
    code, _, _, _ = run(*map(str, images("a.png")))
    assert code == EXIT_OK
    assert servers.count("/oauth/token") == 2 and servers.count("/upload") == 2


def test_bad_credentials_exit_3_with_one_line_and_no_secret(run, images) -> None:
    code, out, err, _ = run(*map(str, images("a.png")), secret="wrong-secret-value")
    assert code == EXIT_AUTH and out == ""
    assert len(err.strip().splitlines()) == 1 and "401" in err
    assert "wrong-secret-value" not in err


def test_the_token_endpoint_is_discovered_from_the_issuer(run, servers, images) -> None:
    code, _, _, _ = run(
        "--issuer", "https://tenant.test/", *map(str, images("a.png")), token_url=False
    )
    assert code == EXIT_OK
    assert servers.count("/.well-known/openid-configuration") == 1


def test_missing_settings_are_named(run, images) -> None:
    code, _, err, _ = run(*map(str, images("a.png")), api=False, token_url=False)
    assert code == EXIT_USAGE
    assert "--api-url (CDO_API_URL)" in err and "--issuer (CDO_ISSUER)" in err


def test_the_token_cache_file_spans_runs(run, servers, images, tmp_path) -> None:
    cache = tmp_path / "token.json"
    for _ in range(3):
        assert run("--token-cache", str(cache), *map(str, images("a.png")))[0] == EXIT_OK
    assert servers.count("/oauth/token") == 1
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 12 ", 12.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_forms(value, seconds) -> None:
    now = 1445412480.0  # 07:28:00 that day
    assert parse_retry_after(value, now=now) == seconds


@pytest.mark.process
def test_help_lists_every_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kto.client", "classify", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for variable in (
        "CDO_API_URL",
        "CDO_TOKEN_URL",
        "CDO_ISSUER",
        "CDO_CLIENT_ID",
        "CDO_CLIENT_SECRET",
        "CDO_AUDIENCE",
        "CDO_TOKEN_CACHE",
        "CDO_BATCH",
        "CDO_DPOP",
        "CDO_ALLOW_INSECURE_HTTP",
    ):
        assert variable in result.stdout
    assert "exit status" in result.stdout


@pytest.mark.process
def test_the_client_imports_neither_the_server_nor_tensorflow() -> None:
    code = (
        "import sys, kto.client, kto.client.cli; "
        "heavy = {'tensorflow', 'keras', 'fastapi', 'cats_dogs_other', 'kto.inference'}; "
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_package_depends_on_httpx_and_joserfc_only() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    assert [d.split(">")[0].split("=")[0] for d in project["dependencies"]] == [
        "httpx",
        "joserfc",  # signs DPoP proofs
    ]
    assert project["scripts"] == {"cats-dogs-other": "kto.client.cli:main"}
