"""``explain-token``: the rule that accepts a token, or the first check that fails; no echo."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc.jwk import RSAKey

from cats_dogs_other.api.auth.explain_token import EXIT_ACCEPTED, EXIT_REFUSED, EXIT_USAGE, main
from cats_dogs_other.testing.issuer import AUDIENCE, ISSUER
from tests.api.oidc_support import LoopbackIssuers, github_token, loopback_issuers, rsa_key

POLICY = """\
issuers:
  - name: gh
    kind: github-actions
    issuer: {issuer}
    single_use: true
    rules:
      - repository_id: "123456789"
        repository_owner_id: "987654"
        ref: refs/heads/main
        scopes: [get::prediction]
"""


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return rsa_key("gh-key")


@pytest.fixture(scope="module")
def github(key: RSAKey) -> Iterator[LoopbackIssuers]:
    with loopback_issuers() as issuers:
        issuers.publish(issuers.url, [key], jwks_path="/.well-known/jwks")
        yield issuers


@pytest.fixture
def policy(tmp_path: Path, github: LoopbackIssuers, monkeypatch) -> Path:
    path = tmp_path / "trust.yml"
    path.write_text(POLICY.format(issuer=github.url))
    monkeypatch.setenv("OAUTH2_ISSUER", ISSUER)
    monkeypatch.setenv("OAUTH2_AUDIENCE", AUDIENCE)
    monkeypatch.delenv("TRUST_POLICY_FILE", raising=False)
    return path


def explain(token: str, *args: str) -> int:
    return main(list(args), stdin=io.StringIO(token + "\n"))


def test_an_accepted_token_names_its_issuer_and_rule(policy, github, key, capsys) -> None:
    token = github_token(key, github.url, AUDIENCE)
    assert explain(token, "--policy", str(policy)) == EXIT_ACCEPTED
    out = capsys.readouterr().out
    assert "issuer: gh" in out and "accepted by rule 1 (scopes: get::prediction)" in out
    assert "single_use" in out
    assert token not in out and token.split(".")[2] not in out
    assert "/.well-known/jwks" in github.requests  # the keys were fetched from the issuer


def test_a_jwks_file_replaces_the_fetch(policy, github, key, tmp_path, capsys) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    before = github.request_count
    token = github_token(key, github.url, AUDIENCE)
    assert explain(token, "--policy", str(policy), "--jwks", str(jwks)) == EXIT_ACCEPTED
    assert github.request_count == before


def test_the_first_failing_check_of_each_rule_is_named(policy, github, key, capsys) -> None:
    token = github_token(key, github.url, AUDIENCE, ref="refs/heads/dev")
    assert explain(token, "--policy", str(policy)) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert "rule 1: ref 'refs/heads/dev' does not match 'refs/heads/main'" in out
    assert "no rule matches" in out


def test_a_401_check_is_reported_before_the_rules(policy, github, key, capsys) -> None:
    token = github_token(key, github.url, "https://other.test")
    assert explain(token, "--policy", str(policy)) == EXIT_REFUSED
    assert "refused (401/503): The token is not meant for this API" in capsys.readouterr().out


def test_an_unknown_issuer_is_refused_without_a_fetch(policy, github, key, capsys) -> None:
    before = github.request_count
    token = github_token(key, github.url + "/", AUDIENCE)
    assert explain(token, "--policy", str(policy)) == EXIT_REFUSED
    assert "no policy issuer is exactly" in capsys.readouterr().out
    assert github.request_count == before


def test_without_a_policy_it_is_a_usage_error(policy, capsys) -> None:
    assert explain("a.b.c") == EXIT_USAGE
    assert "TRUST_POLICY_FILE" in capsys.readouterr().err


def test_an_empty_input_is_a_usage_error(policy, capsys) -> None:
    assert explain("  \n ", "--policy", str(policy)) == EXIT_USAGE
    assert "paste a token on standard input" in capsys.readouterr().err


def test_what_is_not_a_token_is_refused(policy, capsys) -> None:
    assert explain("not-a-token", "--policy", str(policy)) == EXIT_REFUSED
    assert capsys.readouterr().out.startswith("refused: ")


def test_a_jwks_file_without_the_key_refuses(policy, github, key, tmp_path, capsys) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_key("other").as_dict(private=False)]}))
    token = github_token(key, github.url, AUDIENCE)
    assert explain(token, "--policy", str(policy), "--jwks", str(jwks)) == EXIT_REFUSED
    assert "refused (401/503): " in capsys.readouterr().out


def test_a_missing_jwks_file_is_a_usage_error(policy, github, key, tmp_path, capsys) -> None:
    token = github_token(key, github.url, AUDIENCE)
    missing = tmp_path / "nowhere.json"
    assert explain(token, "--policy", str(policy), "--jwks", str(missing)) == EXIT_USAGE
    assert str(missing) in capsys.readouterr().err


def test_a_rule_without_the_apis_scope_is_a_403(policy, github, key, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OAUTH2_SCOPE", "admin::everything")
    token = github_token(key, github.url, AUDIENCE)
    assert explain(token, "--policy", str(policy)) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert "accepted by rule 1" in out
    assert "but the API requires 'admin::everything': 403 insufficient_scope" in out


def test_a_token_without_a_required_claim_is_refused(policy, github, key, capsys) -> None:
    token = github_token(key, github.url, AUDIENCE, runner_environment=None)
    assert explain(token, "--policy", str(policy)) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert "runner_environment" in out and "accepted" not in out
