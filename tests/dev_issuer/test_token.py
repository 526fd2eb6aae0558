"""POST /oauth/token: credentials, bodies, audience and scopes, as Auth0 answers them."""

import logging
import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from cats_dogs_other.dev_issuer import ClientConfig, IssuerSettings, create_app
from tests.dev_issuer.support import AUDIENCE, LOOPBACK_CLIENT, token_form


def verify(client: TestClient, access_token: str) -> jwt.Token:
    """Verify against the keys the issuer publishes, as a resource server would."""
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    return jwt.decode(access_token, keys, algorithms=["RS256"])


def test_form_body_returns_auth0_shaped_response(client: TestClient) -> None:
    response = client.post("/oauth/token", data=token_form())

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86_400
    assert body["scope"] == "get::prediction"
    assert response.headers["cache-control"] == "no-store"


def test_json_body_is_accepted_like_auth0(client: TestClient) -> None:
    response = client.post("/oauth/token", json=token_form())

    assert response.status_code == 200
    assert verify(client, response.json()["access_token"]).claims["azp"] == "dev-client"


def test_http_basic_client_authentication(client: TestClient) -> None:
    body = {"grant_type": "client_credentials", "audience": AUDIENCE}
    response = client.post("/oauth/token", data=body, auth=("dev-client", "dev-secret"))

    assert response.status_code == 200
    assert verify(client, response.json()["access_token"]).claims["sub"] == "dev-client@clients"


def test_token_header_and_every_claim(client: TestClient, settings: IssuerSettings) -> None:
    before = int(time.time())
    access_token = client.post("/oauth/token", data=token_form()).json()["access_token"]

    token = verify(client, access_token)
    kids = [key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]]
    assert token.header == {"alg": "RS256", "typ": "JWT", "kid": kids[0]}
    claims = dict(token.claims)
    iat = claims.pop("iat")
    assert before <= iat <= int(time.time())
    assert claims == {
        "iss": "http://127.0.0.1:9999/",
        "sub": "dev-client@clients",
        "aud": AUDIENCE,
        "exp": iat + settings.token_lifetime_s,
        "scope": "get::prediction",
        "gty": "client-credentials",
        "azp": "dev-client",
    }


def test_token_lifetime_is_configurable() -> None:
    settings = IssuerSettings(url="http://127.0.0.1:9999/", token_lifetime_s=120)
    with TestClient(create_app(settings)) as client:
        body = client.post("/oauth/token", data=token_form()).json()
        claims = verify(client, body["access_token"]).claims

    assert body["expires_in"] == 120
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("dev-client", "wrong-secret"), ("nobody", "dev-secret"), ("dev-client", "")],
)
def test_bad_credentials_in_body_are_401_invalid_client(
    client: TestClient, client_id: str, secret: str
) -> None:
    for send in ({"data": token_form(client_id, secret)}, {"json": token_form(client_id, secret)}):
        response = client.post("/oauth/token", **send)

        assert response.status_code == 401
        assert response.json() == {
            "error": "invalid_client",
            "error_description": "Unknown client_id or wrong client_secret.",
        }


@pytest.mark.parametrize("auth", [("dev-client", "wrong"), ("nobody", "dev-secret")])
def test_bad_basic_credentials_are_401_with_www_authenticate(
    client: TestClient, auth: tuple[str, str]
) -> None:
    body = {"grant_type": "client_credentials", "audience": AUDIENCE}
    response = client.post("/oauth/token", data=body, auth=auth)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith('Basic error="invalid_client"')


def test_no_credentials_at_all_is_401(client: TestClient) -> None:
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "audience": AUDIENCE}
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unknown_audience_is_403_access_denied(client: TestClient) -> None:
    response = client.post("/oauth/token", data=token_form(audience="https://other.api"))

    assert response.status_code == 403
    assert response.json() == {
        "error": "access_denied",
        "error_description": (
            f"Service not found: https://other.api (this issuer serves {AUDIENCE})"
        ),
    }


def test_missing_audience_is_403_access_denied(client: TestClient) -> None:
    body = token_form()
    del body["audience"]
    response = client.post("/oauth/token", data=body)

    assert response.status_code == 403
    assert response.json()["error"] == "access_denied"
    assert AUDIENCE in response.json()["error_description"]


def test_hostile_audience_is_echoed_safely(client: TestClient) -> None:
    response = client.post("/oauth/token", json=token_form(audience='x"\\\n\u00e9y'))

    assert response.status_code == 403
    assert "Service not found: x????y" in response.json()["error_description"]


def test_client_without_scopes_gets_a_token_without_scope(client: TestClient) -> None:
    response = client.post("/oauth/token", data=token_form("no-scope-client", "no-scope-secret"))

    assert response.status_code == 200
    assert response.json()["scope"] == ""
    assert verify(client, response.json()["access_token"]).claims["scope"] == ""


def test_scope_beyond_the_grant_is_403(client: TestClient) -> None:
    for client_id, secret, scope in [
        ("dev-client", "dev-secret", "get::prediction admin"),
        ("no-scope-client", "no-scope-secret", "get::prediction"),
    ]:
        response = client.post("/oauth/token", data=token_form(client_id, secret, scope=scope))

        assert response.status_code == 403
        assert response.json()["error"] == "access_denied"
        assert response.json()["error_description"].startswith("Client has not been granted")


def test_scope_parameter_narrows_the_grant() -> None:
    clients = {"multi": ClientConfig(secret="s3cret", scopes=["get::prediction", "get::model"])}
    settings = IssuerSettings(url="http://127.0.0.1:9999/", clients=clients)
    with TestClient(create_app(settings)) as client:
        everything = client.post("/oauth/token", data=token_form("multi", "s3cret")).json()
        narrowed = client.post(
            "/oauth/token", data=token_form("multi", "s3cret", scope="get::model")
        ).json()

        assert everything["scope"] == "get::prediction get::model"
        assert narrowed["scope"] == "get::model"
        assert verify(client, narrowed["access_token"]).claims["scope"] == "get::model"


def test_other_grant_types_are_refused_with_a_reason(client: TestClient) -> None:
    response = client.post("/oauth/token", data=token_form(grant_type="password"))

    assert response.status_code == 400
    assert response.json() == {
        "error": "unsupported_grant_type",
        "error_description": "grant_type=password is not supported; use client_credentials.",
    }


@pytest.mark.parametrize(
    ("kwargs", "status", "description"),
    [
        ({"content": b"grant_type=x", "headers": {"content-type": "text/plain"}}, 415, "Send"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        ({"json": ["grant_type"]}, 400, "object"),
        ({"json": {"grant_type": "client_credentials", "audience": 1}}, 400, "'audience'"),
        ({"data": {"audience": AUDIENCE}}, 400, "grant_type"),
        (
            {
                "content": b"grant_type=client_credentials&scope=a&scope=b",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            400,
            "repeated: scope",
        ),
        (
            {"content": b"a" * 70_000, "headers": {"content-type": "application/json"}},
            413,
            "64 KiB",
        ),
    ],
)
def test_malformed_requests_get_a_clear_4xx(
    client: TestClient, kwargs: dict, status: int, description: str
) -> None:
    response = client.post("/oauth/token", **kwargs)

    assert response.status_code == status
    assert response.json()["error"] == "invalid_request"
    assert description in response.json()["error_description"]


def test_neither_tokens_nor_secrets_are_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        access_token = client.post("/oauth/token", data=token_form()).json()["access_token"]
        client.post("/oauth/token", data=token_form(secret="wrong-secret"))

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "issued token client_id=dev-client" in text
    assert access_token not in text
    assert access_token.split(".")[2] not in text
    assert "dev-secret" not in text
    assert "wrong-secret" not in text


def test_requests_from_any_address_may_get_tokens(settings: IssuerSettings) -> None:
    with TestClient(create_app(settings), client=("203.0.113.7", 4000)) as client:
        assert client.post("/oauth/token", data=token_form()).status_code == 200
    assert LOOPBACK_CLIENT[0] == "127.0.0.1"


def test_swagger_ui_audience_in_body_and_cors_preflight(client: TestClient) -> None:
    origin = "http://127.0.0.1:8080"
    preflight = client.options(
        "/oauth/token",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-requested-with",
        },
    )
    body = {"grant_type": "client_credentials", "scope": "get::prediction", "audience": AUDIENCE}
    response = client.post(
        "/oauth/token", data=body, auth=("dev-client", "dev-secret"), headers={"Origin": origin}
    )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert verify(client, response.json()["access_token"]).claims["aud"] == AUDIENCE


def test_audience_in_the_query_string_is_ignored_as_auth0_does(client: TestClient) -> None:
    body = {"grant_type": "client_credentials", "scope": "get::prediction"}
    response = client.post(
        f"/oauth/token?audience={AUDIENCE}", data=body, auth=("dev-client", "dev-secret")
    )

    assert response.status_code == 403
    assert response.json()["error"] == "access_denied"
    assert "Missing 'audience'" in response.json()["error_description"]


def test_cors_is_not_granted_to_remote_origins(client: TestClient) -> None:
    response = client.post(
        "/oauth/token", data=token_form(), headers={"Origin": "https://evil.example"}
    )

    assert "access-control-allow-origin" not in response.headers


def test_a_form_body_that_is_not_utf8_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&client_id=\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "The form body is not valid UTF-8 url-encoding.",
    }


def test_a_null_json_parameter_counts_as_absent(client: TestClient) -> None:
    response = client.post("/oauth/token", json={**token_form(), "scope": None})
    assert response.status_code == 200
    assert response.json()["scope"] == "get::prediction"
