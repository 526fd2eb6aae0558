"""POST /dev/oauth/token: the development-only relay to a loopback issuer's token endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.settings import ConfigError, Settings, load_settings

LOCAL_ISSUER = "http://127.0.0.1:9000/"
TOKEN_ENDPOINT = LOCAL_ISSUER + "oauth/token"


class LocalIssuer:
    """Answers the token endpoint by echoing what reached it; JWKS and discovery for start-up."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.up = True

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/.well-known/jwks.json":
            return httpx.Response(200, json={"keys": []})
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200, json={"issuer": LOCAL_ISSUER, "token_endpoint": TOKEN_ENDPOINT}
            )
        self.requests.append(request)
        return httpx.Response(
            200,
            json={"access_token": "a.b.c", "token_type": "Bearer", "expires_in": 60},
            headers={"Cache-Control": "no-store", "Set-Cookie": "x=1", "X-Internal": "1"},
        )


@pytest.fixture
def local_issuer() -> LocalIssuer:
    return LocalIssuer()


@pytest.fixture
def relay(
    make_settings: Callable[..., Settings], local_issuer: LocalIssuer
) -> Iterator[TestClient]:
    settings = make_settings(
        oauth2_issuer=LOCAL_ISSUER,
        oauth2_jwks_uri=".well-known/jwks.json",
        dev_token_proxy_url=TOKEN_ENDPOINT,
    )
    app = create_app(settings, transport=httpx.MockTransport(local_issuer.handle))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_relays_body_and_client_authentication_unchanged(
    relay: TestClient, local_issuer: LocalIssuer
) -> None:
    body = "grant_type=client_credentials&audience=https%3A%2F%2Fapi&scope=get%3A%3Aprediction"
    response = relay.post(
        "/dev/oauth/token?audience=ignored",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Basic ZGV2LWNsaWVudDpkZXYtc2VjcmV0",
            "Cookie": "session=github",
            "Origin": "https://space-8080.app.github.dev",
        },
    )

    assert response.status_code == 200
    assert response.json()["access_token"] == "a.b.c"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    assert "x-internal" not in response.headers
    (forwarded,) = local_issuer.requests
    assert str(forwarded.url) == TOKEN_ENDPOINT  # the query string is dropped, as Auth0 ignores it
    assert forwarded.content.decode() == body
    assert forwarded.headers["authorization"] == "Basic ZGV2LWNsaWVudDpkZXYtc2VjcmV0"
    assert "cookie" not in forwarded.headers
    assert "origin" not in forwarded.headers


def test_a_dpop_token_request_is_refused_with_the_issuer_url(
    relay: TestClient, local_issuer: LocalIssuer
) -> None:
    """Relayed without its proof, it would come back as a Bearer token the client never asked
    for; relayed with it, the issuer would refuse its htu (the relay's URL)."""
    response = relay.post(
        "/dev/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"DPoP": "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.c2ln"},
    )

    assert response.status_code == 400
    assert TOKEN_ENDPOINT in response.json()["detail"]
    assert "DPoP" in response.json()["detail"]
    assert local_issuer.requests == []


def test_openapi_points_swagger_at_the_relay(relay: TestClient) -> None:
    schema = relay.get("/openapi.json").json()
    flow = schema["components"]["securitySchemes"]["auth0"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/dev/oauth/token"
    assert "/dev/oauth/token" not in schema["paths"]


def test_a_large_body_is_refused(relay: TestClient, local_issuer: LocalIssuer) -> None:
    response = relay.post("/dev/oauth/token", content=b"x" * (65 * 1024))
    assert response.status_code == 413
    assert local_issuer.requests == []


def test_an_issuer_that_is_down_is_a_503(relay: TestClient, local_issuer: LocalIssuer) -> None:
    local_issuer.up = False
    response = relay.post("/dev/oauth/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert "make run" in response.json()["detail"]


def test_there_is_no_relay_unless_configured(client: TestClient) -> None:
    assert client.post("/dev/oauth/token", data={"grant_type": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("issuer", "relay_to"),
    [
        ("https://tenant.eu.auth0.com/", "https://tenant.eu.auth0.com/oauth/token"),  # not local
        (LOCAL_ISSUER, "http://127.0.0.1:9001/oauth/token"),  # another server than the issuer
        (LOCAL_ISSUER, "http://example.com/oauth/token"),
    ],
)
def test_the_relay_only_reaches_the_trusted_loopback_issuer(
    issuer: str, relay_to: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTH2_ISSUER", issuer)
    monkeypatch.setenv("OAUTH2_AUDIENCE", "https://api")
    monkeypatch.setenv("DEV_TOKEN_PROXY_URL", relay_to)
    with pytest.raises(ConfigError, match="DEV_TOKEN_PROXY_URL must be the development issuer"):
        load_settings()
