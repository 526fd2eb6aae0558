"""The GitHub Actions claim policy: which verified OIDC tokens a rule of the trust policy accepts.

Modelled on PyPI's trusted publishing (warehouse ``oidc/models/github.py``): repositories and
owners are matched by their numeric ids, which survive renames, never by name; the workflow is
read from ``job_workflow_ref``, the workflow that actually runs the job, so a reusable workflow
from another repository cannot pass as the caller's; ``event_name`` and ``runner_environment``
have safe defaults (no fork pull requests, GitHub-hosted runners only).

Only called once the token's signature, issuer, audience and times hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cats_dogs_other.api.trust_policy import GitHubRule, claim_id, matches

REQUIRED_CLAIMS = (
    "repository",
    "repository_id",
    "repository_owner_id",
    "ref",
    "job_workflow_ref",
    "event_name",
    "runner_environment",
)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """The rule that accepts the token, or the first check that failed (for logs only)."""

    rule: GitHubRule | None
    failure: str | None = None

    @property
    def accepted(self) -> bool:
        return self.rule is not None


def decide(claims: Mapping[str, Any], rules: tuple[GitHubRule, ...]) -> PolicyDecision:
    """First matching rule wins; otherwise the failure of the rule that got furthest."""
    missing = [name for name in REQUIRED_CLAIMS if not isinstance(claims.get(name), str | int)]
    if missing:
        return PolicyDecision(None, f"the token lacks the claim(s) {', '.join(missing)}")
    best: tuple[int, str] = (-1, "no rule")
    for rule in rules:
        checks = rule_checks(rule, claims)
        for depth, (claim, ok) in enumerate(checks):
            if not ok:
                if depth > best[0]:
                    best = (depth, f"rule {rule.index}: {claim}")
                break
        else:
            return PolicyDecision(rule)
    return PolicyDecision(None, best[1])


def rule_checks(rule: GitHubRule, claims: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """Each check of ``rule`` in order, as (what it compares, passed); for explain-token too."""
    repository = claims.get("repository")
    workflow_repo, workflow_path = split_workflow_ref(claims.get("job_workflow_ref"))
    checks = [
        (
            f"repository_id {claims.get('repository_id')!r} != {rule.repository_id}",
            claim_id(claims.get("repository_id")) == rule.repository_id,
        ),
        (
            f"repository_owner_id {claims.get('repository_owner_id')!r} "
            f"!= {rule.repository_owner_id}",
            claim_id(claims.get("repository_owner_id")) == rule.repository_owner_id,
        ),
        (
            f"job_workflow_ref runs a workflow of {workflow_repo!r}, not of {repository!r}",
            workflow_repo is not None and workflow_repo == repository,
        ),
    ]
    if rule.workflow is not None:
        checks.append(
            (
                f"job_workflow_ref path {workflow_path!r} does not match {rule.workflow!r}",
                workflow_path is not None and matches(rule.workflow, workflow_path),
            )
        )
    if rule.ref is not None:
        checks.append(_compare("ref", rule.ref, claims))
    if rule.environment is not None:
        checks.append(_compare("environment", rule.environment, claims))
    event = claims.get("event_name")
    checks.append(
        (f"event_name {event!r} is not in {list(rule.event_name)}", event in rule.event_name)
    )
    runner = claims.get("runner_environment")
    checks.append(
        (
            f"runner_environment {runner!r} != {rule.runner_environment!r}",
            runner == rule.runner_environment,
        )
    )
    return checks


def _compare(claim: str, pattern: str, claims: Mapping[str, Any]) -> tuple[str, bool]:
    value = claims.get(claim)
    return (
        f"{claim} {value!r} does not match {pattern!r}",
        isinstance(value, str) and matches(pattern, value),
    )


def split_workflow_ref(value: Any) -> tuple[str | None, str | None]:
    """``owner/repo/.github/workflows/ci.yml@refs/heads/main`` -> (``owner/repo``, the path).

    Split at the first ``@``: a path holding ``@`` misreads and is refused, never widened.
    """
    if not isinstance(value, str):
        return None, None
    location, at, _ref = value.partition("@")
    parts = location.split("/", 2)
    if not at or len(parts) != 3 or not all(parts):
        return None, None
    return f"{parts[0]}/{parts[1]}", parts[2]
