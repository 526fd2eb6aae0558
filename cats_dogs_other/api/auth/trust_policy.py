"""``TRUST_POLICY_FILE``: issuers trusted beside ``OAUTH2_ISSUER``, and who may call through them.

The file is YAML, read once at start-up with PyYAML's safe loader. Its field names are a
documented contract (docs/github-actions.md)::

    issuers:
      - name: github-actions
        kind: github-actions
        issuer: https://token.actions.githubusercontent.com   # exact
        audience: https://api.example.com                      # exact; default OAUTH2_AUDIENCE
        single_use: false
        rules:                                                 # first match wins; none = refused
          - repository_id: "123456789"                         # required
            repository_owner_id: "987654"                      # required
            workflow: .github/workflows/ci.yml
            ref: refs/heads/main
            environment: production
            scopes: [get::prediction]

Anything the loader cannot be sure of stops the start-up with one line (:class:`TrustPolicyError`):
an unknown field (a typo in a security policy must not widen it silently), a rule that names a
repository but not both of its numeric ids (names are recycled after a rename or a deletion),
an id that is a bool, a float or signed, a wildcard other than one trailing ``*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cats_dogs_other.core.hosts import is_secure_url

GITHUB_ACTIONS = "github-actions"
KINDS = frozenset({GITHUB_ACTIONS})
DEFAULT_MAX_TOKEN_AGE_S = 900
# Events that run only code already in the repository; anything else (pull_request*,
# issue_comment, workflow_run...) can run a fork's code and must be listed by the rule.
DEFAULT_EVENTS = ("push", "workflow_dispatch", "schedule", "release", "merge_group")
DEFAULT_RUNNER_ENVIRONMENT = "github-hosted"
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
ISSUER_FIELDS = frozenset(
    {
        "name",
        "kind",
        "issuer",
        "audience",
        "single_use",
        "max_token_age_s",
        "algorithms",
        "jwks_uri",
        "rules",
    }
)
RULE_FIELDS = frozenset(
    {
        "repository_id",
        "repository_owner_id",
        "workflow",
        "ref",
        "environment",
        "event_name",
        "runner_environment",
        "scopes",
    }
)
# Claims people reach for that are recycled or attacker-chosen: refused with the fix.
NAME_FIELDS = {
    "repository": "repository_id",
    "repository_owner": "repository_owner_id",
    "sub": "repository_id and repository_owner_id",
    "job_workflow_ref": "workflow",
}


class TrustPolicyError(ValueError):
    """The policy file cannot be used; the message is one line that says where and why."""


@dataclass(frozen=True, slots=True)
class GitHubRule:
    """One accepted (repository, workflow, ref, environment, event, runner) combination."""

    index: int  # 1-based, for logs and explain-token
    repository_id: str  # canonical decimal
    repository_owner_id: str
    workflow: str | None
    ref: str | None
    environment: str | None
    event_name: tuple[str, ...]
    runner_environment: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """An issuer of the policy file, with everything needed to validate its tokens."""

    name: str
    kind: str
    issuer: str
    audience: str
    single_use: bool
    max_token_age_s: int
    algorithms: tuple[str, ...]
    jwks_uri: str | None
    rules: tuple[GitHubRule, ...]

    @property
    def discovery_uri(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    path: Path
    issuers: tuple[TrustedIssuer, ...]

    @property
    def single_use(self) -> bool:
        return any(issuer.single_use for issuer in self.issuers)


def load_trust_policy(path: Path, *, default_audience: str, oauth2_issuer: str) -> TrustPolicy:
    """Read and check the file; every problem is a :class:`TrustPolicyError` of one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrustPolicyError(f"cannot read {path}: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise TrustPolicyError(f"{path} is not valid YAML{line}: {problem}") from None
    return parse_trust_policy(document, path, default_audience, oauth2_issuer)


def parse_trust_policy(
    document: Any, path: Path, default_audience: str, oauth2_issuer: str
) -> TrustPolicy:
    if not isinstance(document, dict) or set(document) != {"issuers"}:
        raise TrustPolicyError(f"{path} must hold one mapping with the key 'issuers'")
    entries = document["issuers"]
    if not isinstance(entries, list) or not entries:
        raise TrustPolicyError(f"{path}: 'issuers' must be a non-empty list")
    issuers = tuple(
        _issuer(entry, f"{path}: issuers[{i}]", default_audience) for i, entry in enumerate(entries)
    )
    seen_names: set[str] = set()
    seen_issuers = {oauth2_issuer}
    for entry in issuers:
        if entry.name in seen_names:
            raise TrustPolicyError(f"{path}: the name {entry.name!r} is used twice")
        if entry.issuer in seen_issuers:
            raise TrustPolicyError(
                f"{path}: the issuer {entry.issuer!r} is listed twice (or is OAUTH2_ISSUER)"
            )
        seen_names.add(entry.name)
        seen_issuers.add(entry.issuer)
    return TrustPolicy(path, issuers)


def _issuer(entry: Any, where: str, default_audience: str) -> TrustedIssuer:
    fields = _mapping(entry, where, ISSUER_FIELDS)
    name = _text(fields, "name", where, required=True)
    where = f"{where} ({name})"
    kind = _text(fields, "kind", where, required=True)
    if kind not in KINDS:
        raise TrustPolicyError(f"{where}: kind must be one of {sorted(KINDS)}, got {kind!r}")
    issuer = _url(fields, "issuer", where, required=True)
    audience = _text(fields, "audience", where) or default_audience
    single_use = fields.get("single_use", False)
    if not isinstance(single_use, bool):
        raise TrustPolicyError(f"{where}: single_use must be true or false")
    age = fields.get("max_token_age_s", DEFAULT_MAX_TOKEN_AGE_S)
    if isinstance(age, bool) or not isinstance(age, int) or not 1 <= age <= 86_400:
        raise TrustPolicyError(f"{where}: max_token_age_s must be an integer from 1 to 86400")
    algorithms = _strings(fields, "algorithms", where) or ("RS256",)
    if bad := [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]:
        raise TrustPolicyError(f"{where}: algorithms {bad} are not accepted (asymmetric only)")
    rules = fields.get("rules")
    if not isinstance(rules, list) or not rules:
        raise TrustPolicyError(f"{where}: rules must be a non-empty list (no rule = refused)")
    return TrustedIssuer(
        name=name,
        kind=kind,
        issuer=issuer,
        audience=audience,
        single_use=single_use,
        max_token_age_s=age,
        algorithms=algorithms,
        jwks_uri=_url(fields, "jwks_uri", where) or None,
        rules=tuple(_rule(rule, f"{where}: rules[{i}]", i + 1) for i, rule in enumerate(rules)),
    )


def _rule(entry: Any, where: str, index: int) -> GitHubRule:
    if isinstance(entry, dict):
        for name, fix in NAME_FIELDS.items():
            if name in entry:
                raise TrustPolicyError(
                    f"{where}: {name!r} is not a rule field: names are recycled, so match {fix}"
                )
    fields = _mapping(entry, where, RULE_FIELDS)
    for required in ("repository_id", "repository_owner_id"):
        if required not in fields:
            raise TrustPolicyError(
                f"{where}: {required} is required (the numeric id, not a name or a wildcard)"
            )
    scopes = _strings(fields, "scopes", where)
    if not scopes:
        raise TrustPolicyError(f"{where}: scopes must list at least one scope")
    events = _strings(fields, "event_name", where) or DEFAULT_EVENTS
    return GitHubRule(
        index=index,
        repository_id=canonical_id(fields["repository_id"], f"{where}: repository_id"),
        repository_owner_id=canonical_id(
            fields["repository_owner_id"], f"{where}: repository_owner_id"
        ),
        workflow=_pattern(fields, "workflow", where),
        ref=_pattern(fields, "ref", where),
        environment=_pattern(fields, "environment", where),
        event_name=events,
        runner_environment=_text(fields, "runner_environment", where) or DEFAULT_RUNNER_ENVIRONMENT,
        scopes=frozenset(scopes),
    )


def canonical_id(value: Any, where: str) -> str:
    """A YAML integer or a string of ASCII digits, as a canonical decimal string."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TrustPolicyError(f"{where} must be a number or a string of digits, got {value!r}")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise TrustPolicyError(f"{where} must be digits only (no sign, space or name): {value!r}")
    number = int(value)
    if number < 0:
        raise TrustPolicyError(f"{where} must not be negative")
    return str(number)


def claim_id(value: Any) -> str | None:
    """A token's numeric id claim (string or number) as a canonical decimal; None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return str(int(value))
    return None


def _mapping(entry: Any, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(entry, dict):
        raise TrustPolicyError(f"{where} must be a mapping")
    if unknown := sorted(str(k) for k in entry if k not in allowed):
        raise TrustPolicyError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return entry


def _text(fields: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> str:
    value = fields.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise TrustPolicyError(f"{where}: {name} must be a non-empty string without spaces")
    return value


def _url(fields: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> str:
    value = _text(fields, name, where, required=required)
    if value and not is_secure_url(value):
        raise TrustPolicyError(f"{where}: {name} must be https (plain http only on loopback)")
    return value


def _strings(fields: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = fields.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise TrustPolicyError(f"{where}: {name} must be a list of strings")
    return tuple(value)


def _pattern(fields: Mapping[str, Any], name: str, where: str) -> str | None:
    """An exact value, or a prefix ending in one ``*``; a bare ``*`` is refused (omit it)."""
    value = _text(fields, name, where)
    if not value:
        return None
    if "*" in value[:-1] or value == "*":
        raise TrustPolicyError(
            f"{where}: {name} may only end in '*' (a prefix), and '*' alone matches "
            "everything: omit the field instead"
        )
    return value


def matches(pattern: str, value: str) -> bool:
    """Exact, or a prefix when ``pattern`` ends in ``*``."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern
