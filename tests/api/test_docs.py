"""/docs and /redoc: every asset from this server, the audience in the token request's body,
and the Content-Security-Policy that keeps it so (checked in a real browser in tests/e2e)."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from cats_dogs_other.api.docs import ASSETS_PATH, content_security_policy
from cats_dogs_other.testing.issuer import AUDIENCE, ISSUER, SCOPE

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


def policy(response) -> dict[str, str]:
    header = response.headers["content-security-policy"]
    return dict(directive.strip().split(" ", 1) for directive in header.split(";"))


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_each_documentation_page_has_the_content_security_policy(client, path) -> None:
    response = client.get(path)
    directives = policy(response)

    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "'self' data:"  # no CDN logo, no validator badge
    assert directives["frame-ancestors"] == "'none'"  # /docs holds the client secret dialog
    assert directives["connect-src"] == "'self' https://issuer.test"  # Authorize's token request
    assert response.headers["x-frame-options"] == "DENY"
    for script in re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in directives["script-src"].split()
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]


def test_with_the_relay_swagger_connects_to_this_origin_only(make_settings) -> None:
    settings = make_settings(
        oauth2_issuer="http://127.0.0.1:9000/",
        dev_token_proxy_url="http://127.0.0.1:9000/oauth/token",
    )
    assert "connect-src 'self';" in content_security_policy(settings)


def test_the_dpop_description_survives_markdown(client: TestClient) -> None:
    """Swagger renders descriptions as Markdown: a bare <token> would be an HTML tag."""
    schema = client.get("/openapi.json").json()
    description = schema["components"]["securitySchemes"]["auth0"]["description"]
    assert "`Authorization: DPoP <token>`" in description
