"""The GitHub Actions claim policy: which verified OIDC tokens a rule of the trust policy accepts.

Modelled on PyPI's trusted publishing (warehouse ``oidc/models/github.py``): repositories and
owners are matched by their numeric ids, which survive renames, never by name; the workflow is
read from ``job_workflow_ref``, the workflow that actually runs the job, so a reusable workflow
from another repository cannot pass as the caller's; ``event_name`` and ``runner_environment``
have safe defaults (no fork pull requests, GitHub-hosted runners only).

Only called once the token's signature, issuer, audience and times hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cats_dogs_other.api.auth.trust_policy import GitHubRule, claim_id, matches

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
    facts = _facts(claims)
    best: tuple[int, GitHubRule, str] | None = None
    for rule in rules:
        depth, failed = _first_failure(rule, facts)
        if failed is None:
            return PolicyDecision(rule)
        if best is None or depth > best[0]:
            best = (depth, rule, failed)
    if best is None:
        return PolicyDecision(None, "no rule")
    _, rule, failed = best
    return PolicyDecision(None, f"rule {rule.index}: {describe(failed, rule, claims)}")


def rule_checks(rule: GitHubRule, claims: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """Each check of ``rule`` in order, as (what it compares, passed): for explain-token."""
    facts = _facts(claims)
    return [(describe(name, rule, claims), ok) for name, ok in _checks(rule, facts)]


def _facts(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims the rules compare, normalised once per token."""
    workflow_repo, workflow_path = split_workflow_ref(claims.get("job_workflow_ref"))
    return {
        "repository_id": claim_id(claims.get("repository_id")),
        "repository_owner_id": claim_id(claims.get("repository_owner_id")),
        "repository": claims.get("repository"),
        "workflow_repo": workflow_repo,
        "workflow_path": workflow_path,
        "ref": claims.get("ref"),
        "environment": claims.get("environment"),
        "event_name": claims.get("event_name"),
        "runner_environment": claims.get("runner_environment"),
    }


def _checks(rule: GitHubRule, facts: Mapping[str, Any]) -> Iterator[tuple[str, bool]]:
    """(check, passed) in order, lazily: matching stops at the first failure."""
    yield "repository_id", facts["repository_id"] == rule.repository_id
    yield "repository_owner_id", facts["repository_owner_id"] == rule.repository_owner_id
    yield (
        "job_workflow_ref",
        (facts["workflow_repo"] is not None and facts["workflow_repo"] == facts["repository"]),
    )
    if rule.workflow is not None:
        path = facts["workflow_path"]
        yield "workflow", path is not None and matches(rule.workflow, path)
    for name in ("ref", "environment"):
        pattern = getattr(rule, name)
        if pattern is not None:
            value = facts[name]
            yield name, isinstance(value, str) and matches(pattern, value)
    yield "event_name", facts["event_name"] in rule.event_name
    yield "runner_environment", facts["runner_environment"] == rule.runner_environment


def _first_failure(rule: GitHubRule, facts: Mapping[str, Any]) -> tuple[int, str | None]:
    depth = 0
    for depth, (name, ok) in enumerate(_checks(rule, facts)):
        if not ok:
            return depth, name
    return depth, None


def describe(check: str, rule: GitHubRule, claims: Mapping[str, Any]) -> str:
    """What ``check`` compares, with the token's value: for logs and explain-token only."""
    value = claims.get(check)
    workflow_repo, workflow_path = split_workflow_ref(claims.get("job_workflow_ref"))
    if check == "job_workflow_ref":
        return (
            f"job_workflow_ref runs a workflow of {workflow_repo!r}, "
            f"not of {claims.get('repository')!r}"
        )
    if check == "workflow":
        return f"job_workflow_ref path {workflow_path!r} does not match {rule.workflow!r}"
    if check == "event_name":
        return f"event_name {value!r} is not in {list(rule.event_name)}"
    expected = getattr(rule, check)
    return f"{check} {value!r} does not match {expected!r}"


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
