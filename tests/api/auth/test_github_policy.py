"""Which verified GitHub Actions tokens a trust-policy rule accepts: ids not names, the workflow
that actually runs, safe events and runners by default, and the failure each refusal logs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cats_dogs_other.api.auth.github_policy import (
    REQUIRED_CLAIMS,
    decide,
    rule_checks,
    split_workflow_ref,
)
from cats_dogs_other.api.auth.trust_policy import (
    DEFAULT_EVENTS,
    DEFAULT_RUNNER_ENVIRONMENT,
    GitHubRule,
)

RULE = GitHubRule(
    index=1,
    repository_id="123456789",
    repository_owner_id="987654",
    workflow=None,
    ref=None,
    environment=None,
    event_name=DEFAULT_EVENTS,
    runner_environment=DEFAULT_RUNNER_ENVIRONMENT,
    scopes=frozenset({"get::prediction"}),
)
STRICT = dataclasses.replace(
    RULE, index=2, workflow=".github/workflows/ci.yml", ref="refs/heads/*", environment="prod"
)


def claims(**changes: Any) -> dict[str, Any]:
    """A push on main of octo/app by its own CI workflow, on a GitHub-hosted runner."""
    base: dict[str, Any] = {
        "repository": "octo/app",
        "repository_id": "123456789",
        "repository_owner_id": 987654,  # GitHub sends strings; a number is read the same
        "ref": "refs/heads/main",
        "environment": "prod",
        "job_workflow_ref": "octo/app/.github/workflows/ci.yml@refs/heads/main",
        "event_name": "push",
        "runner_environment": "github-hosted",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def test_a_token_of_the_repository_is_accepted_by_the_first_matching_rule() -> None:
    decision = decide(claims(), (STRICT, RULE))
    assert decision.accepted and decision.rule is STRICT and decision.failure is None


@pytest.mark.parametrize("missing", REQUIRED_CLAIMS)
def test_a_token_without_a_required_claim_is_refused(missing: str) -> None:
    decision = decide(claims(**{missing: None}), (RULE,))
    assert not decision.accepted
    assert decision.failure == f"the token lacks the claim(s) {missing}"


def test_no_rule_accepts_nothing() -> None:
    assert decide(claims(), ()).failure == "no rule"


@pytest.mark.parametrize(
    ("changes", "failure"),
    [
        ({"repository_id": "1"}, "rule 1: repository_id '1' does not match '123456789'"),
        ({"repository_id": "-123456789"}, "repository_id '-123456789' does not match"),
        ({"repository_owner_id": "1"}, "rule 1: repository_owner_id '1' does not match"),
        (
            {"job_workflow_ref": "evil/lib/.github/workflows/x.yml@refs/heads/main"},
            "rule 1: job_workflow_ref runs a workflow of 'evil/lib', not of 'octo/app'",
        ),
        (
            {"job_workflow_ref": "octo/app/.github/workflows/ci.yml"},
            "job_workflow_ref runs a workflow of None, not of 'octo/app'",
        ),
        (
            {"event_name": "pull_request_target"},
            "rule 1: event_name 'pull_request_target' is not in ['push', 'workflow_dispatch'",
        ),
        (
            {"runner_environment": "self-hosted"},
            "rule 1: runner_environment 'self-hosted' does not match 'github-hosted'",
        ),
    ],
    ids=["repo-id", "signed-id", "owner-id", "foreign-workflow", "no-ref", "event", "runner"],
)
def test_each_refusal_says_which_check_failed(changes: dict[str, Any], failure: str) -> None:
    decision = decide(claims(**changes), (RULE,))
    assert not decision.accepted
    assert decision.failure is not None and failure in decision.failure


@pytest.mark.parametrize(
    ("changes", "failure"),
    [
        (
            {"job_workflow_ref": "octo/app/.github/workflows/release.yml@refs/heads/main"},
            "job_workflow_ref path '.github/workflows/release.yml' does not match "
            "'.github/workflows/ci.yml'",
        ),
        ({"ref": "refs/tags/v1"}, "ref 'refs/tags/v1' does not match 'refs/heads/*'"),
        ({"environment": None}, "environment None does not match 'prod'"),
        ({"environment": "production"}, "environment 'production' does not match 'prod'"),
    ],
    ids=["workflow", "ref", "no-environment", "environment-prefix"],
)
def test_a_strict_rule_checks_workflow_ref_and_environment(
    changes: dict[str, Any], failure: str
) -> None:
    decision = decide(claims(**changes), (STRICT,))
    assert decision.failure == f"rule 2: {failure}"


def test_the_refusal_names_the_rule_that_got_furthest() -> None:
    other_repo = dataclasses.replace(RULE, index=1, repository_id="5")
    decision = decide(claims(ref="refs/tags/v1"), (other_repo, STRICT))
    assert decision.failure is not None and decision.failure.startswith("rule 2: ref ")


def test_rule_checks_list_every_check_in_order_for_explain_token() -> None:
    checks = rule_checks(STRICT, claims(ref="refs/tags/v1"))
    passed = [ok for _, ok in checks]
    assert passed == [True, True, True, True, False, True, True, True]
    assert checks[4][0] == "ref 'refs/tags/v1' does not match 'refs/heads/*'"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "octo/app/.github/workflows/ci.yml@refs/heads/main",
            ("octo/app", ".github/workflows/ci.yml"),
        ),
        ("octo/app/.github/workflows/a@b.yml@refs/heads/main", ("octo/app", ".github/workflows/a")),
        ("octo/app@refs/heads/main", (None, None)),
        ("octo//x.yml@refs/heads/main", (None, None)),
        ("octo/app/ci.yml", (None, None)),
        (42, (None, None)),
    ],
)
def test_workflow_refs_split_at_the_first_at(value: Any, expected: tuple[Any, Any]) -> None:
    assert split_workflow_ref(value) == expected
