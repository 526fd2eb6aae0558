"""TRUST_POLICY_FILE at start-up: what it accepts, and the one-line errors for what it cannot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.auth.trust_policy import DEFAULT_EVENTS, matches
from cats_dogs_other.api.settings import ConfigError, load_settings
from cats_dogs_other.testing.issuer import AUDIENCE, ISSUER
from tests.api.oidc_support import loopback_issuers, rsa_key

GITHUB = "https://token.actions.githubusercontent.com"
RULE = """\
      - repository_id: "123456789"
        repository_owner_id: "987654"
        scopes: [get::prediction]
"""


def policy(tmp_path: Path, rules: str = RULE, head: str = "") -> str:
    path = tmp_path / "trust.yml"
    path.write_text(
        f"issuers:\n  - name: gh\n    kind: github-actions\n    issuer: {GITHUB}\n{head}"
        f"    rules:\n{rules}"
    )
    return str(path)


def load(path: str):
    return load_settings(oauth2_issuer=ISSUER, oauth2_audience=AUDIENCE, trust_policy_file=path)


def test_a_minimal_policy_gets_the_documented_defaults(tmp_path: Path) -> None:
    settings = load(policy(tmp_path))
    assert settings.trust_policy is not None
    (entry,) = settings.trust_policy.issuers
    assert entry.audience == AUDIENCE  # default OAUTH2_AUDIENCE
    assert entry.algorithms == ("RS256",)
    assert entry.max_token_age_s == 900
    assert entry.single_use is False
    (rule,) = entry.rules
    assert rule.event_name == DEFAULT_EVENTS
    assert rule.runner_environment == "github-hosted"
    assert entry.discovery_uri == GITHUB + "/.well-known/openid-configuration"


def test_ids_are_canonical_decimals_from_integers_or_digit_strings(tmp_path: Path) -> None:
    rules = "      - repository_id: 00123\n        repository_owner_id: '0042'\n"
    settings = load(policy(tmp_path, rules + "        scopes: [s]\n"))
    assert settings.trust_policy is not None
    rule = settings.trust_policy.issuers[0].rules[0]
    # YAML 1.1 reads an unquoted 00123 as octal: quote ids (the docs say so)
    assert (rule.repository_id, rule.repository_owner_id) == ("83", "42")


BAD_RULES = {
    "name-only": ("      - repository: octo-org/octo-repo\n        scopes: [s]\n", "repository_id"),
    "owner-name-only": (
        '      - repository_id: "1"\n        repository_owner: octo-org\n        scopes: [s]\n',
        "names are recycled",
    ),
    "no-owner-id": ('      - repository_id: "1"\n        scopes: [s]\n', "repository_owner_id"),
    "id-wildcard": (
        '      - repository_id: "12*"\n        repository_owner_id: "1"\n        scopes: [s]\n',
        "digits only",
    ),
    "id-bool": (
        "      - repository_id: true\n        repository_owner_id: 1\n        scopes: [s]\n",
        "number or a string of digits",
    ),
    "id-float": (
        "      - repository_id: 1.0\n        repository_owner_id: 1\n        scopes: [s]\n",
        "number or a string of digits",
    ),
    "id-signed": (
        '      - repository_id: "+1"\n        repository_owner_id: 1\n        scopes: [s]\n',
        "no sign",
    ),
    "id-negative": (
        "      - repository_id: -1\n        repository_owner_id: 1\n        scopes: [s]\n",
        "negative",
    ),
    "ref-inner-wildcard": (RULE + "        ref: refs/*/main\n", "may only end in '*'"),
    "ref-only-wildcard": (RULE + "        ref: '*'\n", "omit the field"),
    "unknown-field": (RULE + "        branch: main\n", "unknown field"),
    "no-scopes": ('      - repository_id: "1"\n        repository_owner_id: "1"\n', "scopes"),
}


@pytest.mark.parametrize("rules, fragment", BAD_RULES.values(), ids=BAD_RULES.keys())
def test_a_bad_rule_is_a_one_line_start_up_error(tmp_path: Path, rules: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(policy(tmp_path, rules))
    message = str(raised.value)
    assert "\n" not in message
    assert "TRUST_POLICY_FILE" in message and fragment in message
    assert raised.value.names == ("TRUST_POLICY_FILE",)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("issuers: [\n", "not valid YAML (line"),
        ("- just a list\n", "one mapping with the key 'issuers'"),
        ("issuers: []\n", "non-empty list"),
        ("issuers:\n  - !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ],
)
def test_a_file_that_does_not_parse_is_a_start_up_error(tmp_path: Path, text, fragment) -> None:
    path = tmp_path / "trust.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load(str(path))
    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    "head, fragment",
    [
        ("    kind: gitlab\n", "kind must be one of"),
        ("    issuer: http://token.example\n", "https"),
        ("    audience: [a, b]\n", "audience must be a non-empty string"),
        ("    single_use: 'yes'\n", "single_use must be true or false"),
        ("    algorithms: [HS256]\n", "asymmetric only"),
        ("    max_token_age_s: 0\n", "max_token_age_s"),
    ],
)
def test_bad_issuer_fields_are_start_up_errors(tmp_path: Path, head: str, fragment: str) -> None:
    path = tmp_path / "trust.yml"
    text = f"issuers:\n  - name: gh\n    kind: github-actions\n    issuer: {GITHUB}\n{head}"
    # a later key overrides an earlier one in YAML: put the bad field last
    path.write_text(text + f"    rules:\n{RULE}")
    with pytest.raises(ConfigError, match=fragment):
        load(str(path))


def test_an_issuer_listed_twice_or_equal_to_oauth2_issuer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trust.yml"
    path.write_text(
        f"issuers:\n  - name: gh\n    kind: github-actions\n    issuer: {ISSUER}\n"
        f"    rules:\n{RULE}"
    )
    with pytest.raises(ConfigError, match="listed twice"):
        load(str(path))


def test_a_missing_file_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "absent.yml"))


@pytest.mark.parametrize(
    "pattern, value, expected",
    [
        ("refs/tags/v*", "refs/tags/v1.2", True),
        ("refs/tags/v*", "refs/heads/v1.2", False),
        ("refs/heads/main", "refs/heads/main-evil", False),
        ("refs/heads/main", "refs/heads/main", True),
    ],
)
def test_the_only_wildcard_is_a_trailing_prefix_star(pattern, value, expected) -> None:
    assert matches(pattern, value) is expected


# --- discovery of a policy issuer: its own host only ----------------------------------------


async def _fetch_keys(issuer: str, jwks_uri: str | None = None) -> KeyCache:
    async with httpx.AsyncClient() as client:
        cache = KeyCache(
            client,
            issuer=issuer,
            jwks_uri=jwks_uri,
            discovery_uri=issuer + "/.well-known/openid-configuration",
            algorithms=["RS256"],
            strict_discovery=True,
        )
        await cache._refresh_if_due()
        return cache


def test_a_discovered_jwks_uri_on_another_host_is_refused() -> None:
    key = rsa_key("k")
    with loopback_issuers() as issuer, loopback_issuers() as elsewhere:
        elsewhere.documents["/jwks"] = {"keys": [key.as_dict(private=False)]}
        issuer.documents["/.well-known/openid-configuration"] = {
            "issuer": issuer.url,
            "jwks_uri": elsewhere.url + "/jwks",
        }
        cache = asyncio.run(_fetch_keys(issuer.url))
        assert cache.kids == frozenset()
        assert "not on the issuer's host" in (cache.last_error or "")
        assert elsewhere.requests == []
        # set explicitly in the policy, the same location is accepted
        explicit = asyncio.run(_fetch_keys(issuer.url, jwks_uri=elsewhere.url + "/jwks"))
        assert explicit.kids == {"k"}


def test_discovery_must_name_the_issuer_exactly() -> None:
    with loopback_issuers() as issuer:
        issuer.publish(issuer.url + "/", [rsa_key("k")], jwks_path="/jwks")  # trailing slash
        cache = asyncio.run(_fetch_keys(issuer.url))
        assert cache.kids == frozenset()
        assert "names issuer" in (cache.last_error or "")


def test_the_documented_worked_policy_loads(tmp_path: Path, repo_root: Path) -> None:
    page = (repo_root / "docs" / "github-actions.md").read_text()
    block = page.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "trust.yml"
    path.write_text(block)
    settings = load(str(path))
    assert settings.trust_policy is not None
    (entry,) = settings.trust_policy.issuers
    assert entry.issuer == GITHUB and len(entry.rules) == 3
    assert entry.rules[1].ref == "refs/tags/v*" and entry.rules[2].event_name == ("pull_request",)


@pytest.mark.parametrize("value", ["", "   ", 42])
def test_the_setting_must_name_a_file(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(oauth2_issuer=ISSUER, oauth2_audience=AUDIENCE, trust_policy_file=value)
    assert "TRUST_POLICY_FILE must name a YAML file" in str(caught.value)


def test_a_policy_needs_a_valid_issuer_and_audience_first(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            oauth2_issuer="http://tenant.example/",
            oauth2_audience=AUDIENCE,
            trust_policy_file=policy(tmp_path),
        )
    assert "TRUST_POLICY_FILE needs OAUTH2_ISSUER and OAUTH2_AUDIENCE set and valid" in str(
        caught.value
    )


def test_single_use_with_several_workers_needs_shared_state(tmp_path: Path) -> None:
    path = policy(tmp_path, head="    single_use: true\n")
    values = {"oauth2_issuer": ISSUER, "oauth2_audience": AUDIENCE, "trust_policy_file": path}
    with pytest.raises(ConfigError) as caught:
        load_settings(**values, workers=2)
    assert "single_use issuers but WORKERS=2 and no STATE_URL" in str(caught.value)
    shared = load_settings(**values, workers=2, state_url="redis://127.0.0.1:6379/0")
    assert shared.trust_policy is not None and shared.trust_policy.single_use
