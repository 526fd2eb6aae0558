"""`make run` in GitHub Codespaces: forwarded URLs printed, Swagger's token request relayed
on the API's own (forwarded) origin, tokens still carrying the issuer the API validates."""

from __future__ import annotations

import base64
import json

import httpx

from tests.e2e.support import AUDIENCE, CODESPACE, REPO_ROOT, StackProcess

CAT = REPO_ROOT / "bruno" / "fixtures" / "cat.png"


def forwarded(stack: StackProcess, port: int) -> str:
    name, domain = (
        CODESPACE["CODESPACE_NAME"],
        CODESPACE["GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN"],
    )
    return f"https://{name}-{port}.{domain}"


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_banner_prints_the_forwarded_urls(codespaces_stack: StackProcess) -> None:
    browser = forwarded(codespaces_stack, codespaces_stack.api_port)
    output = codespaces_stack.output

    assert f"in your browser: {browser}/docs" in output
    assert f"{browser}/redoc" in output
    # the terminal runs inside the codespace: the printed curl commands stay on loopback
    for command in codespaces_stack.printed_commands():
        assert "http://127.0.0.1:" in command


def test_swagger_is_pointed_at_the_api_own_origin(codespaces_stack: StackProcess) -> None:
    schema = httpx.get(codespaces_stack.api_url + "/openapi.json").json()
    flow = schema["components"]["securitySchemes"]["auth0"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/dev/oauth/token"


def test_a_token_through_the_forwarded_origin_classifies(codespaces_stack: StackProcess) -> None:
    origin = forwarded(codespaces_stack, codespaces_stack.api_port)
    response = httpx.post(
        codespaces_stack.api_url + "/dev/oauth/token",
        data={"grant_type": "client_credentials", "audience": AUDIENCE},
        auth=("dev-client", "dev-secret"),
        headers={"Origin": origin, "Referer": origin + "/docs"},
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert claims(token)["iss"] == codespaces_stack.issuer_url  # what the API validates

    with CAT.open("rb") as image:
        upload = httpx.post(
            codespaces_stack.api_url + "/upload",
            headers={"Authorization": f"Bearer {token}", "Origin": origin},
            files={"file": ("cat.png", image, "image/png")},
            timeout=30,
        )
    assert upload.status_code == 200, upload.text


def test_the_relay_keeps_the_issuer_rules(codespaces_stack: StackProcess) -> None:
    origin = forwarded(codespaces_stack, codespaces_stack.api_port)
    url = codespaces_stack.api_url + "/dev/oauth/token"
    in_query = httpx.post(
        f"{url}?audience={AUDIENCE}",
        data={"grant_type": "client_credentials"},
        auth=("dev-client", "dev-secret"),
        headers={"Origin": origin},
    )
    wrong_secret = httpx.post(
        url,
        data={"grant_type": "client_credentials", "audience": AUDIENCE},
        auth=("dev-client", "wrong"),
        headers={"Origin": origin},
    )

    assert in_query.status_code == 403  # the audience is read from the body only
    assert in_query.json()["error"] == "access_denied"
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"


def test_outside_codespaces_there_is_no_relay(stack: StackProcess) -> None:
    response = httpx.post(stack.api_url + "/dev/oauth/token", data={"grant_type": "x"})
    assert response.status_code == 404
    assert "in your browser:" not in stack.output
