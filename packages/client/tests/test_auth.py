"""The authentication extension point: a scheme that signs each request by method and URL."""

from __future__ import annotations

import httpx
from kto.client.api import Classifier
from kto.client.auth import BearerAuth
from kto.client.tokens import AccessToken, ClientCredentials


class ProofAuth(BearerAuth):
    """A stand-in for a proof-of-possession scheme: binds each request to its method and URL,
    and answers a nonce challenge once with the same token, as DPoP does."""

    scheme = "Proof"

    def __init__(self, tokens: ClientCredentials) -> None:
        super().__init__(tokens)
        self.nonce = "none"

    def headers_for(self, method: str, url: httpx.URL, token: AccessToken) -> dict[str, str]:
        return {
            "Authorization": f"{self.scheme} {token.value}",
            "Proof": f"{method} {url} nonce={self.nonce}",
        }

    def retry_same_token(self, response: httpx.Response) -> bool:
        if response.status_code == 401 and "Proof-Nonce" in response.headers:
            self.nonce = response.headers["Proof-Nonce"]
            return True
        return False


def test_a_scheme_builds_headers_from_method_and_url_and_retries_on_a_nonce(
    servers, images
) -> None:
    seen: list[tuple[str, str]] = []  # (Authorization, Proof) of each API request, as sent

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return servers.handle(request)
        seen.append((request.headers["Authorization"], request.headers["Proof"]))
        if "nonce=n-1" not in request.headers.get("Proof", ""):
            return httpx.Response(401, headers={"Proof-Nonce": "n-1"})
        return httpx.Response(200, json={"prediction": "Dog", "values": [0.1, 0.8, 0.1]})

    http = httpx.Client(transport=httpx.MockTransport(api))
    tokens = servers.credentials(http)
    (result,) = Classifier(http, servers.api_url, ProofAuth(tokens)).classify(images("a.png"))

    assert result.ok and result.answer["prediction"] == "Dog"
    assert seen == [
        ("Proof token-1", f"POST {servers.api_url}/upload nonce=none"),
        ("Proof token-1", f"POST {servers.api_url}/upload nonce=n-1"),
    ]
    assert tokens.requests_made == 1  # the nonce retry reuses the token


def test_bearer_does_not_retry_other_refusals(servers, images) -> None:
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return servers.handle(request)
        calls.append(request)
        challenge = 'Bearer realm="api", error="insufficient_scope"'
        return httpx.Response(403, headers={"WWW-Authenticate": challenge}, json={"detail": "no"})

    http = httpx.Client(transport=httpx.MockTransport(api))
    tokens = servers.credentials(http)
    (result,) = Classifier(http, servers.api_url, BearerAuth(tokens)).classify(images("a.png"))
    assert result.status == 403 and result.error == "no"
    assert len(calls) == 1
