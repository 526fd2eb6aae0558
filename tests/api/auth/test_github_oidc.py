"""GitHub Actions OIDC tokens beside Auth0's, through the real server on loopback.

One module-scoped pair of issuers (an Auth0-shaped one and a GitHub-shaped one, each with its own
keys, generated once, one of them sharing a ``kid`` across both), one uvicorn running the API with
a trust policy, and real HTTP everywhere. GitHub-shaped claims come from the development issuer's
claim builder, so the stand-in and these tests agree on the shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.auth.github_policy import REQUIRED_CLAIMS
from cats_dogs_other.api.auth.tokens import Principal
from cats_dogs_other.api.rate_limits import client_key
from cats_dogs_other.api.settings import ConfigError, load_settings
from cats_dogs_other.testing.images import png
from cats_dogs_other.testing.issuer import AUDIENCE, SCOPE, valid_claims
from tests.api.oidc_support import (
    LoopbackIssuers,
    github_token,
    loopback_issuers,
    rsa_key,
    sign,
)
from tests.api.support import serve_app

REPO_ID, OWNER_ID = "123456789", "987654"
POLICY = """\
issuers:
  - name: github-actions
    kind: github-actions
    issuer: {github}
    rules:
      - repository_id: "{repo_id}"
        repository_owner_id: {owner_id}
        workflow: .github/workflows/classify.yml
        ref: refs/heads/main
        scopes: [{scope}]
      - repository_id: {repo_id}
        repository_owner_id: "{owner_id}"
        workflow: .github/workflows/release.yml
        ref: refs/tags/v*
        environment: production
        scopes: [{scope}]
      - repository_id: "555"
        repository_owner_id: "{owner_id}"
        event_name: [pull_request]
        scopes: [{scope}]
      - repository_id: "777"
        repository_owner_id: "{owner_id}"
        scopes: [other::scope]
  - name: github-enterprise
    kind: github-actions
    issuer: {github}/enterprise
    single_use: true
    rules:
      - repository_id: "{repo_id}"
        repository_owner_id: "{owner_id}"
        scopes: [{scope}]
  - name: down
    kind: github-actions
    issuer: {github}/down
    rules:
      - repository_id: "{repo_id}"
        repository_owner_id: "{owner_id}"
        scopes: [{scope}]
"""


@dataclass
class World:
    api: httpx.Client
    auth0: LoopbackIssuers
    github: LoopbackIssuers
    keys: dict[str, RSAKey]
    policy: str

    @property
    def auth0_issuer(self) -> str:
        return self.auth0.url + "/"

    @property
    def github_issuer(self) -> str:
        return self.github.url

    def requests(self) -> int:
        return self.auth0.request_count + self.github.request_count

    def gh(self, key: str = "gh", issuer: str | None = None, **job: Any) -> str:
        return github_token(self.keys[key], issuer or self.github_issuer, AUDIENCE, **job)

    def a0(self, key: str = "a0", **claims: object) -> str:
        body = valid_claims(iss=self.auth0_issuer, **claims)
        return sign(self.keys[key], {k: v for k, v in body.items() if v is not None})

    def call(self, token: str, scheme: str = "Bearer") -> httpx.Response:
        return self.api.get("/model", headers={"Authorization": f"{scheme} {token}"})


@pytest.fixture(scope="module")
def world(make_settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    keys = {
        "a0": rsa_key("a0-key"),
        "a0-shared": rsa_key("shared"),
        "gh": rsa_key("gh-key"),
        "gh-shared": rsa_key("shared"),
        "ghe": rsa_key("ghe-key"),
    }
    with loopback_issuers() as auth0, loopback_issuers() as github:
        auth0.publish(auth0.url + "/", [keys["a0"], keys["a0-shared"]], jwks_path="/jwks.json")
        github.publish(github.url, [keys["gh"], keys["gh-shared"]], jwks_path="/.well-known/jwks")
        github.publish(github.url + "/enterprise", [keys["ghe"]], jwks_path="/enterprise/jwks")
        policy = tmp_path_factory.mktemp("policy") / "trust.yml"
        policy.write_text(
            POLICY.format(github=github.url, repo_id=REPO_ID, owner_id=OWNER_ID, scope=SCOPE)
        )
        settings = make_settings(
            oauth2_issuer=auth0.url + "/", oauth2_jwks_uri=None, trust_policy_file=str(policy)
        )
        with (
            serve_app(create_app(settings)) as served,
            httpx.Client(base_url=f"http://{served.host}:{served.port}", timeout=10) as api,
        ):
            yield World(api, auth0, github, keys, str(policy))


def assert_401(response: httpx.Response, fragment: str = "") -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers.get_list("WWW-Authenticate")[0]
    assert 'error="invalid_token"' in challenge
    assert fragment in response.json()["detail"]


def assert_403(response: httpx.Response) -> None:
    """The policy's refusal names the missing scope only: nothing about the rules."""
    assert response.status_code == 403, response.text
    assert response.json()["detail"] == f"The token lacks the scope {SCOPE!r}."
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


# --- accepted ---------------------------------------------------------------------------------


def test_github_token_of_the_trusted_workflow_on_main_is_accepted(world: World) -> None:
    response = world.call(world.gh())
    assert response.status_code == 200, response.text
    assert response.json()["classes"] == ["Cat", "Dog", "Other"]


def test_auth0_tokens_keep_working_beside_the_policy(world: World) -> None:
    assert world.call(world.a0()).status_code == 200


def test_release_tag_in_its_environment_is_accepted(world: World) -> None:
    token = world.gh(
        ref="refs/tags/v2.1.0",
        workflow_path=".github/workflows/release.yml",
        environment="production",
    )
    assert world.call(token).status_code == 200


@pytest.mark.parametrize("repo_id, owner_id", [(123456789, 987654), ("123456789", 987654)])
def test_ids_as_numbers_or_strings_compare_alike(world: World, repo_id, owner_id) -> None:
    token = world.gh(repository_id=repo_id, repository_owner_id=owner_id)
    assert world.call(token).status_code == 200


def test_the_id_based_sub_format_changes_nothing(world: World) -> None:
    assert world.call(world.gh(sub_format="ids")).status_code == 200


def test_a_backdated_nbf_keeps_passing(world: World) -> None:
    now = int(time.time())
    assert world.call(world.gh(nbf=now - 600, iat=now, exp=now + 300)).status_code == 200


def test_events_a_rule_lists_are_accepted(world: World) -> None:
    token = world.gh(repository="octo-org/pr-repo", repository_id="555", event_name="pull_request")
    assert world.call(token).status_code == 200


def test_a_shared_kid_verifies_with_the_issuers_own_key(world: World) -> None:
    assert world.call(world.gh("gh-shared")).status_code == 200
    assert world.call(world.a0("a0-shared")).status_code == 200


# --- the claim policy: 403 --------------------------------------------------------------------


@pytest.mark.parametrize(
    "job",
    [
        pytest.param({"repository_id": "123456780"}, id="right-name-another-repository-id"),
        pytest.param({"repository_owner_id": "987655"}, id="another-owner-id"),
        pytest.param(
            {"repository": "evil-fork/octo-repo", "event_name": "pull_request"},
            id="a-forks-pull-request",
        ),
        pytest.param({"event_name": "pull_request"}, id="pull-request-not-listed"),
        pytest.param({"event_name": "pull_request_target"}, id="pull-request-target"),
        pytest.param({"event_name": "issue_comment"}, id="issue-comment"),
        pytest.param(
            {"job_workflow_ref": "other-org/shared/.github/workflows/classify.yml@refs/heads/main"},
            id="reusable-workflow-of-another-repository",
        ),
        pytest.param({"workflow_path": ".github/workflows/other.yml"}, id="another-workflow"),
        pytest.param({"ref": "refs/heads/feature"}, id="another-branch"),
        pytest.param({"ref": "refs/tags/v1.0.0"}, id="tag-where-a-branch-is-required"),
        pytest.param(
            {
                "ref": "refs/heads/v1.0.0",
                "workflow_path": ".github/workflows/release.yml",
                "environment": "production",
            },
            id="branch-named-like-a-tag",
        ),
        pytest.param(
            {
                "ref": "refs/tags/v2.0",
                "workflow_path": ".github/workflows/release.yml",
                "environment": "staging",
            },
            id="environment-mismatch",
        ),
        pytest.param(
            {"ref": "refs/tags/v2.0", "workflow_path": ".github/workflows/release.yml"},
            id="environment-missing",
        ),
        pytest.param({"runner_environment": "self-hosted"}, id="self-hosted-runner"),
        pytest.param({"repository_id": "123456789.0"}, id="id-as-a-decimal-string"),
        pytest.param({"repository_id": True}, id="id-as-a-bool"),
        pytest.param(
            {"repository": "octo-org/other", "repository_id": "777"}, id="rule-without-the-scope"
        ),
    ],
)
def test_the_claim_policy_refuses_with_403(world: World, job) -> None:
    assert_403(world.call(world.gh(**job)))


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_each_required_claim_missing_is_refused(world: World, claim: str) -> None:
    missing: dict[str, Any] = {claim: None}
    assert_403(world.call(world.gh(**missing)))


def test_the_failing_claim_is_logged_never_the_token(world: World, caplog) -> None:
    caplog.set_level(logging.INFO, logger="cats_dogs_other.api.auth.github_tokens")
    token = world.gh(repository_owner_id="42")
    assert_403(world.call(token))
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "repository_owner_id" in logged
    assert token not in logged and token.split(".")[2] not in logged


# --- signature, issuer, audience, time: 401 ----------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param(None, id="missing"),
        pytest.param("https://other-api.test", id="wrong"),
        pytest.param([AUDIENCE], id="list-of-ours"),
        pytest.param([AUDIENCE, "https://other-api.test"], id="list-with-ours"),
        pytest.param("https://github.com/octo-org", id="githubs-default-audience"),
    ],
)
def test_audience_must_be_one_string_equal_to_ours(world: World, aud) -> None:
    assert_401(world.call(world.gh(aud=aud)), "audience")


LOOKALIKES = [
    "https://token.actions.githubusercontent.com",  # the real one: not trusted by this server
    "https://token.actions.githubusercontent.com.evil.test",
    "{github}/",  # trailing slash
    "{github}.evil.test",
    "https://{host}",  # another scheme
    "HTTP://{host}",  # case
    "{github}/ENTERPRISE",
    "{auth0}",  # Auth0's issuer without its trailing slash
]


@pytest.mark.parametrize("issuer", LOOKALIKES)
def test_lookalike_issuers_are_refused_without_a_network_request(world: World, issuer) -> None:
    issuer = issuer.format(
        github=world.github.url,
        host=world.github.url.removeprefix("http://"),
        auth0=world.auth0.url,
    )
    before = world.requests()
    assert_401(world.call(world.gh(issuer=issuer)), "issuer")
    assert world.requests() == before


def test_an_auth0_signed_token_claiming_githubs_iss_is_refused(world: World) -> None:
    assert_401(world.call(world.gh("a0")), "key the issuer does not publish")


@pytest.mark.parametrize(
    "signer, make",
    [
        pytest.param("a0-shared", "gh", id="github-iss-signed-by-auth0s-shared-kid"),
        pytest.param("gh-shared", "a0", id="auth0-iss-signed-by-githubs-shared-kid"),
    ],
)
def test_one_kid_at_two_issuers_is_two_keys(world: World, signer: str, make: str) -> None:
    token = getattr(world, make)(signer)
    assert_401(world.call(token), "signature")


def test_expired_github_token_is_refused(world: World) -> None:
    now = int(time.time())
    assert_401(world.call(world.gh(iat=now - 500, exp=now - 200)), "expired")


def test_future_iat_is_refused(world: World) -> None:
    now = int(time.time())
    assert_401(world.call(world.gh(iat=now + 600, exp=now + 900)), "future")


def test_token_older_than_max_token_age_is_refused(world: World) -> None:
    now = int(time.time())
    assert_401(world.call(world.gh(iat=now - 1000, exp=now + 60)), "older than 900 s")


def test_github_token_without_iat_is_refused(world: World) -> None:
    assert_401(world.call(world.gh(iat=None)), "iat")


def test_github_tokens_are_bearer_only(world: World) -> None:
    response = world.call(world.gh(), scheme="DPoP")
    assert response.status_code == 401
    assert "send it as 'Authorization: Bearer'" in response.json()["detail"]


# --- single use, enterprise entries, another issuer's outage ------------------------------------


def test_single_use_token_is_refused_the_second_time(world: World) -> None:
    token = world.gh("ghe", issuer=world.github.url + "/enterprise")
    assert world.call(token).status_code == 200
    assert_401(world.call(token), "already used")
    other = world.gh("ghe", issuer=world.github.url + "/enterprise")
    assert world.call(other).status_code == 200


def test_single_use_token_without_jti_is_refused(world: World) -> None:
    token = world.gh("ghe", issuer=world.github.url + "/enterprise", jti=None)
    assert_401(world.call(token), "jti")


def test_enterprise_entry_does_not_accept_githubs_keys(world: World) -> None:
    token = world.gh("gh", issuer=world.github.url + "/enterprise")
    assert_401(world.call(token), "key the issuer does not publish")


def test_another_issuers_outage_is_503_on_its_tokens_only(world: World) -> None:
    response = world.call(world.gh(issuer=world.github.url + "/down"))
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert world.api.get("/ready").status_code == 200
    assert world.call(world.a0()).status_code == 200
    metrics = world.api.get("/metrics").text
    assert 'reason="trusted_issuer_keys_unavailable"' in metrics


def test_discovery_was_fetched_from_each_issuers_own_host(world: World) -> None:
    """The key sets came from the paths the discovery documents named, nothing else."""
    assert world.call(world.gh()).status_code == 200
    asked = set(world.github.requests)
    assert "/.well-known/openid-configuration" in asked
    assert "/.well-known/jwks" in asked
    assert "/jwks.json" in set(world.auth0.requests)
    assert not {p for p in asked if "jwks.json" in p}


def policy_path(tmp_path: Path, text: str) -> str:
    path = tmp_path / "trust.yml"
    path.write_text(text)
    return str(path)


@contextmanager
def replica(world: World, make_settings, **overrides: Any) -> Iterator[httpx.Client]:
    """Another API process's worth of app: its own lifespan, key caches and state store."""
    settings = make_settings(
        oauth2_issuer=world.auth0_issuer,
        oauth2_jwks_uri=None,
        trust_policy_file=world.policy,
        **overrides,
    )
    with (
        serve_app(create_app(settings)) as served,
        httpx.Client(base_url=f"http://{served.host}:{served.port}", timeout=10) as api,
    ):
        yield api


def test_single_use_replay_is_refused_across_two_replicas_sharing_state_url(
    world: World, make_settings, redis_url: str
) -> None:
    with (
        replica(world, make_settings, state_url=redis_url) as one,
        replica(world, make_settings, state_url=redis_url) as two,
    ):
        token = world.gh("ghe", issuer=world.github.url + "/enterprise")
        header = {"Authorization": f"Bearer {token}"}
        assert one.get("/model", headers=header).status_code == 200
        again = two.get("/model", headers=header)
        assert again.status_code == 401
        assert "already used" in again.json()["detail"]


def test_single_use_with_the_store_down_is_503_never_an_accept(
    world: World, make_settings, redis_server
) -> None:
    if redis_server.process is None:
        redis_server.start()
    with replica(world, make_settings, state_url=redis_server.url) as api:
        redis_server.stop()
        try:
            token = world.gh("ghe", issuer=world.github.url + "/enterprise")
            response = api.get("/model", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 503
            assert "Retry-After" in response.headers
            other = api.get("/model", headers={"Authorization": f"Bearer {world.gh()}"})
            assert other.status_code == 200  # entries without single_use do not need the store
        finally:
            redis_server.start()


def test_single_use_with_several_workers_needs_state_url(world: World) -> None:
    with pytest.raises(ConfigError, match="single_use issuers but WORKERS=2 and no STATE_URL"):
        load_settings(
            oauth2_issuer=world.auth0_issuer,
            oauth2_audience=AUDIENCE,
            trust_policy_file=world.policy,
            workers=2,
        )


def test_dpop_mode_required_applies_to_oauth2_issuer_only(world: World, make_settings) -> None:
    with replica(world, make_settings, dpop_mode="required") as api:
        github = api.get("/model", headers={"Authorization": f"Bearer {world.gh()}"})
        assert github.status_code == 200, github.text
        auth0 = api.get("/model", headers={"Authorization": f"Bearer {world.a0()}"})
        assert auth0.status_code == 401
        assert "DPoP-bound tokens only" in auth0.json()["detail"]


def test_github_callers_are_rate_limited_by_repository_id(world: World, make_settings) -> None:
    """RATE_LIMITS_BY_CLIENT names a repository by id: every token of its jobs counts."""
    overrides = '{"github:123456789": "2/minute"}'
    image = {"file": ("a.png", png((230, 20, 20)), "image/png")}
    with replica(world, make_settings, rate_limits_by_client=overrides) as api:
        statuses = []
        for _ in range(3):
            token = world.gh(repository_id=int(REPO_ID))  # a new token each time, same repo
            auth = {"Authorization": f"Bearer {token}"}
            statuses.append(api.post("/upload", headers=auth, files=image).status_code)
        auth0 = {"Authorization": f"Bearer {world.a0()}"}
        assert api.post("/upload", headers=auth0, files=image).status_code == 200
    assert statuses == [200, 200, 429]
    principal = Principal("github:123456789", frozenset(), issuer_name="github-actions")
    assert client_key(principal) == "github:123456789"
