"""DPoP in the client: proofs a verifier accepts, a bound token, and the nonce round trips."""

from __future__ import annotations

import json

import httpx
import pytest
from kto.client.api import Classifier
from kto.client.cli import EXIT_AUTH, EXIT_OK, EXIT_USAGE
from kto.client.dpop import DPoPAuth, DPoPKey, DPoPTokenRequestAuth
from kto.client.errors import TokenError
from kto.client.tokens import ClientCredentials, MemoryCache


def dpop_classifier(servers, clock) -> tuple[Classifier, DPoPKey, ClientCredentials]:
    http = httpx.Client(transport=servers.transport)
    key = DPoPKey(clock=clock)
    tokens = servers.credentials(http, token_request_auth=DPoPTokenRequestAuth(key), clock=clock)
    return Classifier(http, servers.api_url, DPoPAuth(tokens, key)), key, tokens


def sent(servers, path: str) -> list[httpx.Request]:
    return [r for r in servers.requests if r.url.path == path]


def test_token_request_and_uploads_carry_fresh_proofs(servers, clock, images) -> None:
    classifier, key, tokens = dpop_classifier(servers, clock)
    results = classifier.classify(images("a.png", "b.png"))

    assert all(r.ok for r in results)
    assert tokens.requests_made == 1 and servers.bound == {"token-1": key.jkt}
    (token_request,) = sent(servers, "/oauth/token")
    claims, jkt = servers.verify_proof(token_request.headers["DPoP"])
    assert jkt == key.jkt
    assert claims["htm"] == "POST" and claims["htu"] == servers.token_url
    assert claims["iat"] == int(clock.now) and "ath" not in claims and "nonce" not in claims

    uploads = sent(servers, "/upload")
    assert [r.headers["Authorization"] for r in uploads] == ["DPoP token-1"] * 2
    proofs = [servers.verify_proof(r.headers["DPoP"]) for r in uploads]
    for claims, jkt in proofs:
        assert jkt == key.jkt
        assert claims["htm"] == "POST" and claims["htu"] == servers.api_url + "/upload"
        assert claims["ath"] == servers.ath("token-1") and claims["iat"] == int(clock.now)
    jtis = {claims["jti"] for claims, _ in proofs} | {
        servers.verify_proof(token_request.headers["DPoP"])[0]["jti"]
    }
    assert len(jtis) == 3, "every proof has its own jti"


def test_htu_leaves_out_query_and_fragment(servers) -> None:
    key = DPoPKey()
    proof = key.proof("GET", httpx.URL("https://api.test:8443/upload?x=1#part"))
    claims, _ = servers.verify_proof(proof)
    assert claims["htu"] == "https://api.test:8443/upload" and claims["htm"] == "GET"


def test_the_api_nonce_is_signed_in_after_one_retry_and_kept(servers, clock, images) -> None:
    servers.api_nonce = "api-nonce-1"
    classifier, _, tokens = dpop_classifier(servers, clock)

    results = classifier.classify(images("a.png", "b.png"))

    assert all(r.ok for r in results)
    nonces = [
        servers.verify_proof(r.headers["DPoP"])[0].get("nonce") for r in sent(servers, "/upload")
    ]
    # The first upload is refused for want of the nonce, retried once with it; the second
    # upload carries it from the start.
    assert nonces == [None, "api-nonce-1", "api-nonce-1"]
    assert tokens.requests_made == 1, "a nonce challenge does not cost a new token"


def test_a_nonce_from_any_answer_is_used_next(servers, clock, images) -> None:
    classifier, key, _ = dpop_classifier(servers, clock)
    classifier.classify(images("a.png"))
    request = httpx.Request("POST", servers.api_url + "/upload")
    key.observe(httpx.Response(200, headers={"DPoP-Nonce": "rotated"}, request=request))

    classifier.classify(images("b.png"))

    last = sent(servers, "/upload")[-1]
    assert servers.verify_proof(last.headers["DPoP"])[0]["nonce"] == "rotated"
    other_origin = httpx.URL(servers.token_url)
    assert key.nonce_for(other_origin) is None, "nonces are per server"


def test_the_api_asks_for_a_nonce_only_once_per_request(servers, clock, images) -> None:
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return servers.handle(request)
        calls.append(request)
        headers = {"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": "n"}
        return httpx.Response(401, headers=headers, json={})

    servers_transport = httpx.MockTransport(api)
    http = httpx.Client(transport=servers_transport)
    key = DPoPKey()
    tokens = servers.credentials(http, token_request_auth=DPoPTokenRequestAuth(key))
    (result,) = Classifier(http, servers.api_url, DPoPAuth(tokens, key)).classify(images("a.png"))

    assert result.status == 401 and len(calls) == 2


def test_the_token_endpoint_nonce_is_answered_once(servers, clock, images) -> None:
    servers.issuer_nonce = "issuer-nonce-1"
    classifier, key, _ = dpop_classifier(servers, clock)

    (result,) = classifier.classify(images("a.png"))

    assert result.ok
    token_requests = sent(servers, "/oauth/token")
    nonces = [servers.verify_proof(r.headers["DPoP"])[0].get("nonce") for r in token_requests]
    assert nonces == [None, "issuer-nonce-1"]
    upload = sent(servers, "/upload")[0]
    assert "nonce" not in servers.verify_proof(upload.headers["DPoP"])[0], (
        "the issuer's nonce is its own"
    )
    assert servers.bound == {"token-1": key.jkt}


def test_a_bearer_token_for_a_dpop_request_is_refused_clearly(servers, clock, images) -> None:
    servers.dpop_ignored = True
    classifier, _, _ = dpop_classifier(servers, clock)

    with pytest.raises(TokenError, match="Bearer token: DPoP is not enabled"):
        classifier.classify(images("a.png"))
    assert sent(servers, "/upload") == [], "an unbound token is never sent as DPoP"


def test_a_renewed_token_is_bound_to_the_same_key(servers, clock, images) -> None:
    classifier, key, tokens = dpop_classifier(servers, clock)
    classifier.classify(images("a.png"))
    servers.revoked.add("token-1")

    (result,) = classifier.classify(images("b.png"))

    assert result.ok and tokens.requests_made == 2
    assert servers.bound == {"token-1": key.jkt, "token-2": key.jkt}


def test_the_command_with_dpop(run, servers, images) -> None:
    servers.api_nonce = "n-1"
    code, out, err, _ = run("--dpop", "--format", "json", *map(str, images("a.png", "b.png")))

    assert code == EXIT_OK, err
    assert [r["ok"] for r in json.loads(out)] == [True, True]
    assert list(servers.bound) == ["token-1"]
    assert all(r.headers["Authorization"] == "DPoP token-1" for r in sent(servers, "/upload"))


def test_the_command_reads_cdo_dpop(run, servers, images, monkeypatch) -> None:
    monkeypatch.setenv("CDO_DPOP", "1")
    code, _, err, _ = run(*map(str, images("a.png")))
    assert code == EXIT_OK, err
    assert list(servers.bound) == ["token-1"]


def test_the_command_refuses_dpop_with_a_token_file(run, servers, images, tmp_path) -> None:
    cache = tmp_path / "token.json"
    code, out, err, _ = run("--dpop", "--token-cache", str(cache), *map(str, images("a.png")))

    assert code == EXIT_USAGE and out == ""
    assert "--token-cache" in err and len(err.strip().splitlines()) == 1
    assert not cache.exists() and servers.requests == []


def test_the_command_exits_3_when_the_issuer_ignores_dpop(run, servers, images) -> None:
    servers.dpop_ignored = True
    code, out, err, _ = run("--dpop", *map(str, images("a.png")))

    assert code == EXIT_AUTH and out == ""
    assert "DPoP is not enabled" in err and "token-1" not in err


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", None, "N_A\x1b[2J"])
def test_a_dpop_token_request_refuses_any_other_token_type(loopback, token_type) -> None:
    answer = {"access_token": "stolen-if-used", "token_type": token_type, "expires_in": 60}
    loopback.answers["/oauth/token"] = (200, answer)
    cache = MemoryCache()
    with httpx.Client() as http:
        tokens = ClientCredentials(
            http,
            token_url=loopback.url + "/oauth/token",
            client_id="c",
            client_secret="s",
            audience="a",
            cache=cache,
            token_request_auth=DPoPTokenRequestAuth(DPoPKey()),
        )
        with pytest.raises(TokenError, match="answered the DPoP token request with a") as refused:
            tokens.token()

    assert cache.load(tokens.cache_key) is None, "a refused token is never kept"
    assert "\x1b" not in str(refused.value) and "stolen-if-used" not in str(refused.value)


def test_the_command_stops_when_a_relay_drops_the_proof(run, loopback, images) -> None:
    loopback.answers["/oauth/token"] = (200, {"access_token": "t", "token_type": "Bearer"})
    urls = ["--token-url", loopback.url + "/oauth/token", "--api-url", loopback.url]
    code, out, err, _ = run("--dpop", *urls, *map(str, images("a.png")), network=True)

    assert code == EXIT_AUTH and out == "" and len(err.splitlines()) == 1
    assert "with a Bearer token: DPoP is not enabled" in err and "drop --dpop" in err
    assert loopback.paths == ["/oauth/token"], "no upload with an unbound token"
