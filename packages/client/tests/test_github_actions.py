"""``--auth github-actions``: the job's OIDC token instead of a client secret."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from kto.client.cli import EXIT_AUTH, EXIT_OK, EXIT_USAGE, main
from kto.client.errors import ConfigurationError, TokenError
from kto.client.github_actions import FALLBACK_LIFETIME_S, GitHubActionsTokens, resolve_auth

RUNTIME = "https://pipelines.actions.test/abc/idtoken?api-version=2.0"
REQUEST_TOKEN = "job-request-token-0123456789"


def fake_jwt(exp: float, n: int) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'exp': exp, 'n': n})}.c2ln"


class Runtime:
    """The Actions runtime endpoint in front of the fake API of conftest.py."""

    def __init__(self, servers, clock, lifetime_s: float = 300) -> None:
        self.servers, self.clock, self.lifetime_s = servers, clock, lifetime_s
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "pipelines.actions.test":
            return self.servers.handle(request)
        self.requests.append(request)
        if request.headers.get("Authorization") != f"bearer {REQUEST_TOKEN}":
            return httpx.Response(401, json={"message": "bad request token"})
        token = fake_jwt(self.clock() + self.lifetime_s, len(self.requests))
        self.servers.issued.append(token)
        return httpx.Response(200, json={"value": token})

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


@pytest.fixture
def job(monkeypatch, servers):
    for name in ("CDO_CLIENT_ID", "CDO_CLIENT_SECRET", "CDO_TOKEN_URL", "CDO_ISSUER", "CDO_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDO_API_URL", servers.api_url)
    monkeypatch.setenv("CDO_AUDIENCE", servers.audience)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", RUNTIME)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)


def invoke(transport, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["classify", *args], transport=transport, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_inside_a_job_without_a_secret_the_jobs_token_is_used(job, servers, clock, images):
    runtime = Runtime(servers, clock)
    code, out, err = invoke(runtime.transport, "--format", "json", *map(str, images("a.png")))
    assert code == EXIT_OK, err
    (asked,) = runtime.requests
    assert asked.url.params["audience"] == servers.audience
    assert asked.url.params["api-version"] == "2.0"
    assert servers.count("/oauth/token") == 0
    assert REQUEST_TOKEN not in out + err and servers.issued[0] not in out + err


def test_the_token_is_asked_for_again_before_it_expires(servers, clock) -> None:
    runtime = Runtime(servers, clock, lifetime_s=300)
    with httpx.Client(transport=runtime.transport) as http:
        tokens = GitHubActionsTokens(
            http, request_url=RUNTIME, request_token=REQUEST_TOKEN, audience="aud", clock=clock
        )
        first = tokens.token()
        assert tokens.token() is first
        clock.now += 241  # within the 60 s margin of exp
        assert tokens.token().value != first.value
    assert len(runtime.requests) == 2


def test_a_client_secret_keeps_client_credentials() -> None:
    environ = {"ACTIONS_ID_TOKEN_REQUEST_URL": RUNTIME}
    assert resolve_auth("auto", "secret", environ) == "client-credentials"
    assert resolve_auth("auto", None, environ) == "github-actions"
    assert resolve_auth("auto", None, {}) == "client-credentials"


def test_token_cache_with_github_actions_is_a_usage_error(job, servers, clock, images, tmp_path):
    runtime = Runtime(servers, clock)
    paths = map(str, images("a.png"))
    code, _, err = invoke(runtime.transport, "--token-cache", str(tmp_path / "t"), *paths)
    assert code == EXIT_USAGE
    assert "--token-cache" in err


def test_without_id_token_permission_the_message_says_what_to_add(
    job, servers, clock, images, monkeypatch
):
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    code, _, err = invoke(
        Runtime(servers, clock).transport, "--auth", "github-actions", *map(str, images("a.png"))
    )
    assert code == EXIT_AUTH
    assert "id-token: write" in err


def test_a_refused_request_token_is_an_auth_error(job, servers, clock, images, monkeypatch):
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong-token-0123456789")
    code, _, err = invoke(Runtime(servers, clock).transport, *map(str, images("a.png")))
    assert code == EXIT_AUTH
    assert "answered 401" in err and "wrong-token" not in err


def runtime_answering(handler, clock) -> GitHubActionsTokens:
    """A token source whose Actions runtime is ``handler``."""
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return GitHubActionsTokens(
        http, request_url=RUNTIME, request_token=REQUEST_TOKEN, audience="aud", clock=clock
    )


def test_the_audience_is_added_to_the_runtime_url(clock) -> None:
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        return httpx.Response(200, json={"value": fake_jwt(clock() + 300, 1)})

    runtime_answering(handler, clock).token()
    assert asked[0].params["api-version"] == "2.0" and asked[0].params["audience"] == "aud"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(403, json={"message": "no"}), "answered 403; give the job `permissions"),
        (httpx.Response(200, text="<html>"), "answered no token (no 'value')"),
        (httpx.Response(200, json=["value"]), "answered no token (no 'value')"),
        (httpx.Response(200, json={"value": "not-a-jwt"}), "answered no token (no 'value')"),
    ],
    ids=["forbidden", "not-json", "not-an-object", "not-a-jwt"],
)
def test_a_runtime_without_a_token_is_a_token_error(clock, answer, message) -> None:
    tokens = runtime_answering(lambda request: answer, clock)
    with pytest.raises(TokenError, match="The Actions token service") as caught:
        tokens.token()
    assert message in str(caught.value)


def test_an_unreachable_runtime_is_a_token_error(clock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TokenError, match="could not be reached: connection refused"):
        runtime_answering(handler, clock).token()


@pytest.mark.parametrize(
    "payload", ["e30", "eyJleHAiOiB0cnVlfQ", "!!!"], ids=["no-exp", "bool", "bad"]
)
def test_a_token_without_a_readable_exp_lives_five_minutes(clock, payload: str) -> None:
    value = f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"
    tokens = runtime_answering(lambda request: httpx.Response(200, json={"value": value}), clock)
    token = tokens.token()
    assert token.value == value
    assert token.expires_at == clock() + FALLBACK_LIFETIME_S


def test_an_unknown_auth_mode_is_a_usage_error() -> None:
    with pytest.raises(ConfigurationError, match="--auth must be one of auto, client-credentials"):
        resolve_auth("oidc", None, {})
    assert resolve_auth("github-actions", "secret", {}) == "github-actions"
