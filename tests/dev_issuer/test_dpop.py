"""POST /oauth/token with a DPoP proof: a token bound to the proof's key (RFC 9449 section 5)."""

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from cats_dogs_other.dev_issuer import IssuerSettings, create_app
from tests.dev_issuer.support import token_form
from tests.dpop_proofs import ProofSigner

TOKEN_ENDPOINT = "http://127.0.0.1:9999/oauth/token"


@pytest.fixture
def signer() -> ProofSigner:
    return ProofSigner()


def claims_of(client: TestClient, access_token: str) -> dict[str, object]:
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    return dict(jwt.decode(access_token, keys, algorithms=["RS256"]).claims)


def test_a_proof_gets_a_dpop_bound_token(client: TestClient, signer: ProofSigner) -> None:
    proof = signer.proof("POST", TOKEN_ENDPOINT)
    response = client.post("/oauth/token", data=token_form(), headers={"DPoP": proof})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert claims_of(client, body["access_token"])["cnf"] == {"jkt": signer.jkt}


def test_no_proof_gets_a_bearer_token_without_cnf(client: TestClient) -> None:
    body = client.post("/oauth/token", data=token_form()).json()

    assert body["token_type"] == "Bearer"
    assert "cnf" not in claims_of(client, body["access_token"])


def test_discovery_lists_the_proof_algorithms(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["dpop_signing_alg_values_supported"][0] == "ES256"


@pytest.mark.parametrize(
    ("method", "url", "claims"),
    [
        ("GET", TOKEN_ENDPOINT, {}),
        ("POST", "http://127.0.0.1:9999/other", {}),
        ("POST", "https://127.0.0.1:9999/oauth/token", {}),
        ("POST", TOKEN_ENDPOINT, {"jti": None}),
        ("POST", TOKEN_ENDPOINT, {"htu": None}),
    ],
    ids=["htm", "htu-path", "htu-scheme", "jti", "no-htu"],
)
def test_a_proof_for_another_request_is_refused(
    client: TestClient, signer: ProofSigner, method: str, url: str, claims: dict[str, object]
) -> None:
    proof = signer.proof(method, url, claims=claims)
    response = client.post("/oauth/token", data=token_form(), headers={"DPoP": proof})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"


def test_old_proof_is_refused(client: TestClient, signer: ProofSigner) -> None:
    proof = signer.proof("POST", TOKEN_ENDPOINT, claims={"iat": int(time.time()) - 300})
    response = client.post("/oauth/token", data=token_form(), headers={"DPoP": proof})

    assert response.status_code == 400
    assert "iat" in response.json()["error_description"]


def test_private_key_in_the_proof_is_refused(client: TestClient, signer: ProofSigner) -> None:
    header = {"jwk": signer.key.as_dict(private=True)}
    proof = signer.proof("POST", TOKEN_ENDPOINT, header=header)
    response = client.post("/oauth/token", data=token_form(), headers={"DPoP": proof})

    assert response.status_code == 400
    assert "private key" in response.json()["error_description"]


def test_a_replayed_proof_is_refused(client: TestClient, signer: ProofSigner) -> None:
    proof = signer.proof("POST", TOKEN_ENDPOINT)
    first = client.post("/oauth/token", data=token_form(), headers={"DPoP": proof})
    second = client.post("/oauth/token", data=token_form(), headers={"DPoP": proof})

    assert first.status_code == 200
    assert second.status_code == 400
    assert "already used" in second.json()["error_description"]


def test_two_proofs_are_refused(client: TestClient, signer: ProofSigner) -> None:
    headers = [("DPoP", signer.proof("POST", TOKEN_ENDPOINT)) for _ in range(2)]
    response = client.post("/oauth/token", data=token_form(), headers=headers)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"


def test_the_client_is_authenticated_before_the_proof_is_looked_at(
    client: TestClient, signer: ProofSigner
) -> None:
    proof = signer.proof("POST", TOKEN_ENDPOINT)
    refused = client.post("/oauth/token", data=token_form(secret="wrong"), headers={"DPoP": proof})
    accepted = client.post("/oauth/token", data=token_form(), headers={"DPoP": proof})

    assert refused.status_code == 401
    assert accepted.status_code == 200  # the refused request did not use up the proof


def test_a_full_replay_cache_answers_503_instead_of_forgetting(signer: ProofSigner) -> None:
    settings = IssuerSettings(url="http://127.0.0.1:9999", dpop_replay_cache_size=1)
    with TestClient(create_app(settings)) as client:
        first = client.post(
            "/oauth/token",
            data=token_form(),
            headers={"DPoP": signer.proof("POST", TOKEN_ENDPOINT)},
        )
        second = client.post(
            "/oauth/token",
            data=token_form(),
            headers={"DPoP": signer.proof("POST", TOKEN_ENDPOINT)},
        )

    assert first.status_code == 200
    assert second.status_code == 503
    assert 1 <= int(second.headers["Retry-After"]) <= 62
