"""The GitHub Actions stand-in: discovery, its own keys, the runtime endpoint, minting for tests."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from cats_dogs_other.dev_issuer import IssuerSettings, create_app
from cats_dogs_other.dev_issuer.github import DEFAULT_JOB, REQUEST_TOKEN

GITHUB = "http://127.0.0.1:9999/github-actions"
RUNTIME = "/github-actions/idtoken?api-version=2.0"


def claims_of(client: TestClient, token: str) -> dict:
    keys = KeySet.import_key_set(client.get("/github-actions/.well-known/jwks").json())
    return dict(jwt.decode(token, keys, algorithms=["RS256"]).claims)


def ask(client: TestClient, query: str = "&audience=https://api.test", token: str = REQUEST_TOKEN):
    return client.get(RUNTIME + query, headers={"Authorization": f"bearer {token}"})


def test_discovery_names_the_stand_in_and_a_key_set_on_its_own_host(client: TestClient) -> None:
    config = client.get("/github-actions/.well-known/openid-configuration").json()
    assert config["issuer"] == GITHUB
    assert config["jwks_uri"] == GITHUB + "/.well-known/jwks"
    assert {"repository_id", "job_workflow_ref", "runner_environment"} <= set(
        config["claims_supported"]
    )


def test_its_keys_are_not_the_auth0_issuers(client: TestClient) -> None:
    github = {k["kid"] for k in client.get("/github-actions/.well-known/jwks").json()["keys"]}
    auth0 = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert github and auth0 and not github & auth0


def test_the_runtime_endpoint_mints_a_github_shaped_token(client: TestClient) -> None:
    response = ask(client)
    assert response.status_code == 200
    claims = claims_of(client, response.json()["value"])
    assert claims["iss"] == GITHUB
    assert claims["aud"] == "https://api.test"
    assert claims["repository_id"] == DEFAULT_JOB["repository_id"]
    assert claims["sub"] == "repo:octo-org/octo-repo:ref:refs/heads/main"
    assert claims["job_workflow_ref"] == (
        "octo-org/octo-repo/.github/workflows/classify.yml@refs/heads/main"
    )
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] - claims["nbf"] == 600  # backdated like GitHub's
    assert claims["jti"]


def test_without_an_audience_it_is_githubs_default(client: TestClient) -> None:
    claims = claims_of(client, ask(client, query="").json()["value"])
    assert claims["aud"] == "https://github.com/octo-org"


def test_the_runtime_endpoint_needs_the_request_token(client: TestClient) -> None:
    assert ask(client, token="wrong-request-token-xx").status_code == 401
    assert client.get(RUNTIME).status_code == 401
    assert ask(client, query="&audience=a&audience=b").status_code == 400


def test_the_job_is_configurable(settings: IssuerSettings) -> None:
    job = {"repository_id": "42", "environment": "production"}
    custom = settings.model_copy(update={"github_job": job})
    with TestClient(create_app(custom)) as client:
        claims = claims_of(client, ask(client).json()["value"])
    assert claims["repository_id"] == "42"
    assert claims["sub"] == "repo:octo-org/octo-repo:environment:production"


def test_mint_sets_and_removes_claims_per_request(client: TestClient) -> None:
    body = {
        "audience": "https://api.test",
        "claims": {"ref": "refs/tags/v1", "runner_environment": None},
        "sub_format": "ids",
    }
    claims = claims_of(client, client.post("/github-actions/mint", json=body).json()["value"])
    assert claims["ref"] == "refs/tags/v1"
    assert "runner_environment" not in claims
    assert claims["sub"] == "repository_owner_id:987654:repository_id:123456789:ref:refs/tags/v1"


def test_mint_is_refused_off_loopback(settings: IssuerSettings) -> None:
    with TestClient(create_app(settings), client=("192.0.2.7", 5000)) as client:
        response = client.post("/github-actions/mint", json={"audience": "a"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("content", "description"),
    [
        (b"{not json", "The body is not valid JSON."),
        (b'["audience"]', "The JSON body must be an object of parameters."),
        (b'{"audience": 5}', "Send audience (string), claims (object), sub_format (name or ids)."),
        (b'{"audience": "a", "claims": []}', "Send audience (string), claims (object)"),
        (b'{"audience": "a", "sub_format": "emails"}', "sub_format (name or ids)."),
    ],
    ids=["not-json", "a-list", "audience", "claims", "sub-format"],
)
def test_a_malformed_mint_request_is_a_400(
    client: TestClient, content: bytes, description: str
) -> None:
    response = client.post(
        "/github-actions/mint", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert description in response.json()["error_description"]
