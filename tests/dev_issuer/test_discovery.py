"""Discovery document and JWKS: what a resource server reads to find and trust the keys."""

from starlette.testclient import TestClient

from cats_dogs_other.dev_issuer import IssuerSettings, create_app

PRIVATE_RSA_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def test_openid_configuration_points_at_our_endpoints(client: TestClient) -> None:
    config = client.get("/.well-known/openid-configuration").json()

    assert config["issuer"] == "http://127.0.0.1:9999/"
    assert config["token_endpoint"] == "http://127.0.0.1:9999/oauth/token"
    assert config["jwks_uri"] == "http://127.0.0.1:9999/.well-known/jwks.json"
    assert config["grant_types_supported"] == ["client_credentials"]
    assert config["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert config["scopes_supported"] == ["get::prediction"]


def test_jwks_publishes_one_public_rsa_signing_key(client: TestClient) -> None:
    response = client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    [key] = response.json()["keys"]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kid"]
    assert not PRIVATE_RSA_MEMBERS & set(key)


def test_each_start_generates_a_fresh_key(client: TestClient, settings: IssuerSettings) -> None:
    first = client.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
    with TestClient(create_app(settings)) as other:
        second = other.get("/.well-known/jwks.json").json()["keys"][0]["kid"]

    assert first != second


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "OK"}
