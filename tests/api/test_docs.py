"""/docs and /redoc: every asset from this server, the audience in the token request's body."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from cats_dogs_other.api.docs import ASSETS_PATH
from tests.api.support import AUDIENCE, ISSUER, SCOPE

ASSET_REFERENCE = re.compile(r'(?:src|href)="([^"]+)"')


def referenced_assets(html: str) -> list[str]:
    return ASSET_REFERENCE.findall(html)


def test_swagger_ui_loads_every_asset_from_this_server(client: TestClient) -> None:
    page = client.get("/docs")
    assets = referenced_assets(page.text)

    assert page.status_code == 200
    assert {urlsplit(a).netloc for a in assets} == {""}, assets  # nothing from another host
    assert {f"{ASSETS_PATH}/swagger-ui-bundle.js", f"{ASSETS_PATH}/swagger-ui.css"} <= set(assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 0


def test_redoc_loads_its_bundle_from_this_server(client: TestClient) -> None:
    page = client.get("/redoc")
    assets = referenced_assets(page.text)

    assert page.status_code == 200
    assert f"{ASSETS_PATH}/redoc.standalone.js" in assets
    assert {urlsplit(a).netloc for a in assets} == {""}, assets
    assert "googleapis.com" not in page.text  # ReDoc's default web-font stylesheet
    bundle = client.get(f"{ASSETS_PATH}/redoc.standalone.js")
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["content-type"]


def test_swagger_puts_the_audience_in_the_token_request_body(client: TestClient) -> None:
    page = client.get("/docs").text

    assert "additionalQueryStringParams" not in page  # Auth0 ignores a query-string audience
    assert "requestInterceptor: audienceInBody" in page
    assert f'"audience": "{AUDIENCE}"' in page
    assert f'"scope": "{SCOPE}"' in page


def test_the_oauth2_redirect_page_is_served(client: TestClient) -> None:
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "oauth2" in response.text.lower()


def test_openapi_declares_the_issuers_token_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    flow = schema["components"]["securitySchemes"]["auth0"]["flows"]["clientCredentials"]

    assert flow["tokenUrl"] == ISSUER + "oauth/token"
    assert flow["scopes"] == {SCOPE: "Classify images"}
    assert "/dev/oauth/token" not in schema["paths"]
