"""Every DPoP rule (RFC 9449 sections 4.3, 7 and 8) through HTTP, against the real app.

Access tokens are signed by the fake issuer's keys; proofs by client keys made here, so each test
shows one broken field against an otherwise valid request.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from joserfc.jwk import ECKey, RSAKey

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.core.dpop import DPOP_ALGORITHMS, ProofError, ProofVerifier, access_token_hash
from cats_dogs_other.core.dpop_nonce import NonceSource
from cats_dogs_other.core.replay_cache import ReplayCache
from cats_dogs_other.testing.issuer import FakeIssuer
from cats_dogs_other.testing.jose import b64json, b64url
from tests.api.support import bearer, dpop, running_app, serve
from tests.dpop_proofs import ProofSigner

URL = "http://testserver/model"
REALM = 'realm="cats-dogs-other"'
ALGS = 'algs="ES256 ES384 PS256 RS256"'
NONCE_SECRET = "n" * 32


def challenges(response: Any) -> list[str]:
    values: list[str] = response.headers.get_list("WWW-Authenticate")
    return values


def assert_dpop_error(response: Any, error: str, fragment: str, status: int = 401) -> None:
    """The error sits in the DPoP challenge; Bearer is still offered, bare (RFC 9449 7.1)."""
    assert response.status_code == status, response.text
    bearer_challenge, dpop_challenge = challenges(response)
    assert bearer_challenge == f"Bearer {REALM}"
    assert dpop_challenge.startswith(f'DPoP {REALM}, error="{error}", ')
    assert dpop_challenge.endswith(ALGS)
    assert f'error_description="{response.json()["detail"]}"' in dpop_challenge
    assert fragment in response.json()["detail"]


def assert_bad_proof(response: Any, fragment: str) -> None:
    assert_dpop_error(response, "invalid_dpop_proof", fragment)


# --- a valid proof ---------------------------------------------------------------------------


def test_bound_token_with_a_fresh_proof_reaches_the_model(client, bound_token, signer) -> None:
    for _ in range(2):  # a new proof per request
        proof = signer.proof("GET", URL, access_token=bound_token)
        response = client.get("/model", headers=dpop(bound_token, proof))
        assert response.status_code == 200, response.text
        assert "DPoP-Nonce" not in response.headers  # nonces are off by default


def test_proof_on_upload(client, bound_token, signer, images) -> None:
    proof = signer.proof("POST", "http://testserver/upload", access_token=bound_token)
    response = client.post(
        "/upload",
        headers=dpop(bound_token, proof),
        files={"file": ("a.png", images["red"], "image/png")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == "Cat"


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (lambda: ECKey.generate_key("P-384"), "ES384"),
        (lambda: RSAKey.generate_key(2048), "PS256"),
        (lambda: RSAKey.generate_key(2048), "RS256"),
    ],
    ids=["ES384", "PS256", "RS256"],
)
def test_every_allowed_algorithm(client, module_issuer, key: Callable[[], Any], alg) -> None:
    own = ProofSigner(key(), alg=alg)
    token = module_issuer.token(cnf={"jkt": own.jkt})
    proof = own.proof("GET", URL, access_token=token)
    assert client.get("/model", headers=dpop(token, proof)).status_code == 200


def test_htu_is_compared_without_query_and_after_normalisation(client, bound_token, signer) -> None:
    proof = signer.proof("GET", "HTTP://TestServer:80/model", access_token=bound_token)
    response = client.get("/model?x=1", headers=dpop(bound_token, proof))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "htu",
    [
        "http://testserver/%6Dodel",
        "HTTP://TESTSERVER:80/%6d%6F%64%65%6C",
        "http://testserver/mod%65l",
    ],
)
def test_htu_percent_encoded_unreserved_characters_are_decoded(
    client, bound_token, signer, htu
) -> None:
    """RFC 3986 section 6.2.2.2, as RFC 9449 section 4.3 asks."""
    proof = signer.proof("GET", htu, access_token=bound_token)
    response = client.get("/model", headers=dpop(bound_token, proof))
    assert response.status_code == 200, response.text


def test_scheme_is_case_insensitive(client, bound_token, signer) -> None:
    headers = {
        "Authorization": f"dpop {bound_token}",
        "DPoP": signer.proof("GET", URL, access_token=bound_token),
    }
    assert client.get("/model", headers=headers).status_code == 200


# --- challenges --------------------------------------------------------------------------------


def test_missing_credentials_offer_both_schemes(client) -> None:
    response = client.get("/model")
    assert response.status_code == 401
    assert challenges(response) == [f"Bearer {REALM}", f"DPoP {REALM}, {ALGS}"]
    assert "DPoP" in response.json()["detail"]


def test_bad_bearer_token_keeps_its_error_in_the_bearer_challenge(client, module_issuer) -> None:
    token = module_issuer.token(exp=int(time.time()) - 120, iat=int(time.time()) - 3600)
    response = client.get("/model", headers=bearer(token))
    bearer_challenge, dpop_challenge = challenges(response)
    assert 'error="invalid_token"' in bearer_challenge
    assert dpop_challenge == f"DPoP {REALM}, {ALGS}"


def test_bad_token_with_dpop_scheme_is_invalid_token_in_the_dpop_challenge(
    client, module_issuer, signer
) -> None:
    token = module_issuer.token(cnf={"jkt": signer.jkt}, aud="https://other.test")
    proof = signer.proof("GET", URL, access_token=token)
    assert_dpop_error(client.get("/model", headers=dpop(token, proof)), "invalid_token", "audience")


# --- token and scheme must agree ---------------------------------------------------------------


def test_bound_token_as_bearer_is_refused(client, bound_token) -> None:
    response = client.get("/model", headers=bearer(bound_token))
    assert_dpop_error(response, "invalid_token", "bound to a DPoP key")


def test_unbound_token_with_dpop_scheme_is_refused(client, module_issuer, signer) -> None:
    token = module_issuer.token()
    proof = signer.proof("GET", URL, access_token=token)
    assert_dpop_error(client.get("/model", headers=dpop(token, proof)), "invalid_token", "Bearer")


def test_unbound_bearer_token_still_works(client, module_issuer) -> None:
    assert client.get("/model", headers=bearer(module_issuer.token())).status_code == 200


@pytest.mark.parametrize("cnf", [{"x5t#S256": "abc"}, "jkt", {"jkt": ""}, {"jkt": 7}])
def test_unusable_confirmation_claim_refuses_the_token(client, module_issuer, cnf) -> None:
    response = client.get("/model", headers=bearer(module_issuer.token(cnf=cnf)))
    assert response.status_code == 401
    assert "cnf" in response.json()["detail"]


def test_dpop_scheme_without_a_proof(client, bound_token) -> None:
    assert_bad_proof(client.get("/model", headers=dpop(bound_token, None)), "'DPoP' header")


def test_duplicate_dpop_headers_are_400(client, bound_token, signer) -> None:
    proofs = [signer.proof("GET", URL, access_token=bound_token) for _ in range(2)]
    headers = [("Authorization", f"DPoP {bound_token}"), ("DPoP", proofs[0]), ("DPoP", proofs[1])]
    response = client.get("/model", headers=headers)
    assert response.status_code == 400
    assert "once" in response.json()["detail"]


def test_scope_is_checked_for_dpop_tokens_too(client, module_issuer, signer) -> None:
    token = module_issuer.token(cnf={"jkt": signer.jkt}, scope="read:other")
    proof = signer.proof("GET", URL, access_token=token)
    response = client.get("/model", headers=dpop(token, proof))
    assert_dpop_error(response, "insufficient_scope", "scope", status=403)
    assert 'scope="get::prediction"' in challenges(response)[1]


# --- each field of the proof ---------------------------------------------------------------


def test_replayed_proof_is_refused(client, bound_token, signer) -> None:
    proof = signer.proof("GET", URL, access_token=bound_token)
    assert client.get("/model", headers=dpop(bound_token, proof)).status_code == 200
    assert_bad_proof(client.get("/model", headers=dpop(bound_token, proof)), "already used")
    assert (
        'cats_dogs_other_auth_failures_total{reason="dpop_replay"}' in client.get("/metrics").text
    )


def test_proof_by_another_key_than_the_bound_one(client, bound_token) -> None:
    stranger = ProofSigner()
    proof = stranger.proof("GET", URL, access_token=bound_token)
    assert_bad_proof(client.get("/model", headers=dpop(bound_token, proof)), "another key")


def test_proof_whose_jwk_is_not_the_signing_key(client, bound_token, signer) -> None:
    """Signed by a stranger's key while showing the bound public key: the signature fails."""
    stranger = ProofSigner()
    proof = stranger.proof(
        "GET", URL, access_token=bound_token, header={"jwk": signer.key.as_dict(private=False)}
    )
    assert_bad_proof(client.get("/model", headers=dpop(bound_token, proof)), "signature")


def test_proof_edited_after_signing(client, bound_token, signer) -> None:
    header, _, signature = signer.proof("GET", URL, access_token=bound_token).split(".")
    payload = {"jti": "edited", "htm": "GET", "htu": URL, "iat": int(time.time())}
    payload["ath"] = access_token_hash(bound_token)
    forged = f"{header}.{b64json(payload)}.{signature}"
    assert_bad_proof(client.get("/model", headers=dpop(bound_token, forged)), "signature")


@pytest.mark.parametrize(
    ("header", "claims", "fragment"),
    [
        ({"typ": None}, {}, "typ"),
        ({"typ": "JWT"}, {}, "typ"),
        ({"typ": "at+jwt"}, {}, "typ"),
        ({"jwk": None}, {}, "public key"),
        ({"jwk": {"kty": "EC", "crv": "P-256"}}, {}, "jwk"),
        ({"jwk": {"kty": "oct", "k": "c2VjcmV0"}}, {}, "private key"),
        ({"crit": ["kid"], "kid": "k"}, {}, "crit"),
        ({"b64": True}, {}, "b64"),
        ({}, {"jti": None}, "jti"),
        ({}, {"jti": ""}, "jti"),
        ({}, {"jti": "x" * 257}, "jti"),
        ({}, {"jti": 12345}, "jti"),
        ({}, {"htm": None}, "htm"),
        ({}, {"htm": "POST"}, "htm"),
        ({}, {"htm": "get"}, "htm"),
        ({}, {"htu": None}, "htu"),
        ({}, {"htu": "http://testserver/upload"}, "htu"),
        ({}, {"htu": "https://testserver/model"}, "htu"),
        ({}, {"htu": "http://evil.test/model"}, "htu"),
        ({}, {"htu": "http://testserver:8080/model"}, "htu"),
        ({}, {"htu": "/model"}, "htu"),
        ({}, {"htu": ["http://testserver/model"]}, "htu"),
        ({}, {"iat": None}, "iat"),
        ({}, {"iat": "now"}, "iat"),
        ({}, {"iat": True}, "iat"),
        ({}, {"iat": 10**400}, "iat"),
        ({}, {"iat": -(10**400)}, "iat"),
        ({}, {"ath": None}, "ath"),
        ({}, {"ath": access_token_hash("another-token")}, "ath"),
        ({}, {"ath": 1}, "ath"),
        ({}, {"ath": "é"}, "ath"),
        ({}, {"ath": "\ud800"}, "ath"),
        ({}, {"htu": "http://testserver/mod\ud800el"}, "htu"),
        ({}, {"htu": "http://[::1/model"}, "htu"),
        ({}, {"htu": "http://testserver:99999/model"}, "htu"),
        ({}, {"htu": "http://user@testserver/model"}, "userinfo"),
        ({}, {"htu": "http://user:secret@testserver/model"}, "userinfo"),
        ({}, {"htu": "http://@testserver/model"}, "userinfo"),
        ({}, {"htu": "http://testserver/x/../model"}, "htu"),  # dot segments: never removed
        ({}, {"htu": "http://testserver/x/%2E%2E/model"}, "htu"),
        ({}, {"htu": "http://testserver/%2Fmodel"}, "htu"),  # "/" is reserved: stays escaped
    ],
)
def test_each_broken_field_is_refused(
    client, bound_token, signer, header: dict[str, Any], claims: dict[str, Any], fragment: str
) -> None:
    proof = signer.proof("GET", URL, access_token=bound_token, header=header, claims=claims)
    assert_bad_proof(client.get("/model", headers=dpop(bound_token, proof)), fragment)


@pytest.mark.parametrize("offset_s", [-120, -61, 61, 120])
def test_iat_outside_the_window_is_refused(client, bound_token, signer, offset_s) -> None:
    claims = {"iat": int(time.time()) + offset_s}
    proof = signer.proof("GET", URL, access_token=bound_token, claims=claims)
    assert_bad_proof(client.get("/model", headers=dpop(bound_token, proof)), "60 s")


def test_iat_inside_the_window_is_accepted(client, bound_token, signer) -> None:
    for offset_s in (-50, 50):
        claims = {"iat": int(time.time()) + offset_s}
        proof = signer.proof("GET", URL, access_token=bound_token, claims=claims)
        assert client.get("/model", headers=dpop(bound_token, proof)).status_code == 200


def test_private_key_in_jwk_is_refused(client, module_issuer) -> None:
    own = ProofSigner()
    token = module_issuer.token(cnf={"jkt": own.jkt})
    proof = own.proof("GET", URL, access_token=token, header={"jwk": own.key.as_dict(private=True)})
    assert_bad_proof(client.get("/model", headers=dpop(token, proof)), "private key")


def test_jwk_of_another_curve_than_the_algorithm(client, module_issuer) -> None:
    own = ProofSigner()
    token = module_issuer.token(cnf={"jkt": own.jkt})
    p384 = ECKey.generate_key("P-384").as_dict(private=False)
    proof = own.proof("GET", URL, access_token=token, header={"jwk": p384})
    assert_bad_proof(client.get("/model", headers=dpop(token, proof)), "not a public key")


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # the point of the test
def test_small_rsa_key_is_refused(client, module_issuer) -> None:
    own = ProofSigner(RSAKey.generate_key(1024), alg="RS256")
    token = module_issuer.token(cnf={"jkt": own.jkt})
    proof = own.proof("GET", URL, access_token=token)
    assert_bad_proof(client.get("/model", headers=dpop(token, proof)), "2048")


def test_algorithm_outside_the_allow_list(client, module_issuer) -> None:
    own = ProofSigner(RSAKey.generate_key(2048), alg="RS512")
    token = module_issuer.token(cnf={"jkt": own.jkt})
    proof = own.proof("GET", URL, access_token=token)
    assert_bad_proof(client.get("/model", headers=dpop(token, proof)), "algorithm")


def _unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:
    return f"{b64json(header)}.{b64json(payload)}.{b64url(signature)}"


def test_alg_none_and_hmac_are_refused(client, bound_token, signer) -> None:
    jwk = signer.key.as_dict(private=False)
    payload = {"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time())}
    payload["ath"] = access_token_hash(bound_token)
    none = f"{b64json({'typ': 'dpop+jwt', 'alg': 'none', 'jwk': jwk})}.{b64json(payload)}."
    assert_bad_proof(client.get("/model", headers=dpop(bound_token, none)), "not a signed JWT")
    head = {"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}
    signing_input = f"{b64json(head)}.{b64json(payload)}".encode()
    mac = hmac.new(b"secret", signing_input, hashlib.sha256).digest()
    assert_bad_proof(
        client.get("/model", headers=dpop(bound_token, _unsigned(head, payload, mac))),
        "algorithm",
    )


@pytest.mark.parametrize(
    "proof",
    [
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.e30.e30",
        "!!!.e30.c2ln",
        "e30=.e30.c2ln",
        b64url(b"[]") + ".e30.c2ln",
        b64url(b"\xff\xfe") + ".e30.c2ln",
        b64url(b'{"typ":"dpop+jwt","typ":"JWT"}') + ".e30.c2ln",
        b64url(b'{"alg":NaN}') + ".e30.c2ln",
        b64url(b"[" * 2000 + b"]" * 2000) + ".e30.c2ln",
        b64url(b'{"a":' * 20 + b"1" + b"}" * 20) + ".e30.c2ln",
        "x" * 9000,
    ],
    ids=[
        "one-part",
        "two-parts",
        "four-parts",
        "empty-objects",
        "not-base64url",
        "padded",
        "array-header",
        "not-utf8",
        "repeated-name",
        "nan",
        "deep-arrays",
        "deep-objects",
        "over-8-kib",
    ],
)
def test_garbage_proofs_are_invalid_dpop_proof(client, bound_token, proof: str) -> None:
    response = client.get("/model", headers=dpop(bound_token, proof))
    assert response.status_code == 401, response.text
    assert 'error="invalid_dpop_proof"' in challenges(response)[1]


def test_proof_header_with_non_ascii_bytes(client, bound_token) -> None:
    headers = {"Authorization": f"DPoP {bound_token}".encode(), "DPoP": "é.é.é".encode()}
    response = client.get("/model", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_dpop_proof"' in challenges(response)[1]


# --- settings: required, disabled, public URL, replay-cache bound ------------------------------


@pytest.fixture
def app_with(
    make_settings: Callable[..., Settings], module_issuer: FakeIssuer
) -> Iterator[Callable[..., TestClient]]:
    """A fresh app with extra settings; closed at the end of the test."""
    stack: list[Any] = []

    def start(**overrides: Any) -> TestClient:
        context = running_app(make_settings(**overrides), module_issuer)
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def test_required_mode_refuses_bearer_and_offers_only_dpop(
    app_with, module_issuer, bound_token, signer
) -> None:
    required = app_with(dpop_mode="required")
    assert challenges(required.get("/model")) == [f"DPoP {REALM}, {ALGS}"]
    response = required.get("/model", headers=bearer(module_issuer.token()))
    assert response.status_code == 401
    (challenge,) = challenges(response)
    assert challenge.startswith(f'DPoP {REALM}, error="invalid_token"')
    assert "DPoP-bound tokens only" in response.json()["detail"]
    proof = signer.proof("GET", URL, access_token=bound_token)
    assert required.get("/model", headers=dpop(bound_token, proof)).status_code == 200


def test_disabled_mode_refuses_bound_tokens_and_the_dpop_scheme(
    app_with, module_issuer, bound_token, signer
) -> None:
    disabled = app_with(dpop_mode="disabled")
    assert challenges(disabled.get("/model")) == [f"Bearer {REALM}"]
    response = disabled.get("/model", headers=bearer(bound_token))
    assert response.status_code == 401
    assert "disabled" in response.json()["detail"]
    proof = signer.proof("GET", URL, access_token=bound_token)
    response = disabled.get("/model", headers=dpop(bound_token, proof))
    assert response.status_code == 401
    assert challenges(response) == [f"Bearer {REALM}"]
    assert disabled.get("/model", headers=bearer(module_issuer.token())).status_code == 200


def test_public_url_setting_is_the_htu(app_with, bound_token, signer) -> None:
    public = app_with(dpop_public_url="https://api.example.test/")
    proof = signer.proof("GET", "https://api.example.test/model", access_token=bound_token)
    assert public.get("/model", headers=dpop(bound_token, proof)).status_code == 200
    proof = signer.proof("GET", URL, access_token=bound_token)
    assert_bad_proof(public.get("/model", headers=dpop(bound_token, proof)), "htu")


def test_iat_window_is_configurable(app_with, bound_token, signer) -> None:
    wide = app_with(dpop_iat_window_s=300)
    old = {"iat": int(time.time()) - 200}
    proof = signer.proof("GET", URL, access_token=bound_token, claims=old)
    assert wide.get("/model", headers=dpop(bound_token, proof)).status_code == 200


def test_full_replay_cache_sheds_load_instead_of_forgetting(app_with, bound_token, signer) -> None:
    tiny = app_with(dpop_replay_cache_size=2)
    for _ in range(2):
        proof = signer.proof("GET", URL, access_token=bound_token)
        assert tiny.get("/model", headers=dpop(bound_token, proof)).status_code == 200
    proof = signer.proof("GET", URL, access_token=bound_token)
    response = tiny.get("/model", headers=dpop(bound_token, proof))
    assert response.status_code == 503
    assert 1 <= int(response.headers["Retry-After"]) <= 60 + 5 + 1  # window + clock skew
    # the refused proof took no slot, and the accepted ones are still remembered
    first = signer.proof("GET", URL, access_token=bound_token)
    assert tiny.get("/model", headers=dpop(bound_token, first)).status_code == 503


# --- server nonces (RFC 9449 section 8) ---------------------------------------------------------


def test_nonce_round_trip(app_with, bound_token, signer) -> None:
    nonced = app_with(dpop_nonces=True, dpop_nonce_secret=NONCE_SECRET)
    proof = signer.proof("GET", URL, access_token=bound_token)
    response = nonced.get("/model", headers=dpop(bound_token, proof))
    assert_dpop_error(response, "use_dpop_nonce", "nonce")
    nonce = response.headers["DPoP-Nonce"]
    proof = signer.proof("GET", URL, access_token=bound_token, nonce=nonce)
    response = nonced.get("/model", headers=dpop(bound_token, proof))
    assert response.status_code == 200, response.text
    assert response.headers["DPoP-Nonce"] == nonce  # same window
    # the proof refused for its nonce was not recorded: signed again with the nonce, it passes
    retry = signer.proof("GET", URL, access_token=bound_token, nonce=nonce)
    assert nonced.get("/model", headers=dpop(bound_token, retry)).status_code == 200


@pytest.mark.parametrize("nonce", ["made-up", "1.AAAA", "٣.abc", "0" * 100, "1.é", "1.\ud800"])
def test_forged_nonce_is_refused(app_with, bound_token, signer, nonce) -> None:
    nonced = app_with(dpop_nonces=True, dpop_nonce_secret=NONCE_SECRET)
    proof = signer.proof("GET", URL, access_token=bound_token, nonce=nonce)
    response = nonced.get("/model", headers=dpop(bound_token, proof))
    assert_dpop_error(response, "use_dpop_nonce", "nonce")


def test_nonces_are_shared_by_apps_with_the_same_secret(app_with, bound_token, signer) -> None:
    """What several workers or replicas see: a nonce from one is good at the other."""
    first = app_with(dpop_nonces=True, dpop_nonce_secret=NONCE_SECRET)
    second = app_with(dpop_nonces=True, dpop_nonce_secret=NONCE_SECRET)
    proof = signer.proof("GET", URL, access_token=bound_token)
    nonce = first.get("/model", headers=dpop(bound_token, proof)).headers["DPoP-Nonce"]
    proof = signer.proof("GET", URL, access_token=bound_token, nonce=nonce)
    assert second.get("/model", headers=dpop(bound_token, proof)).status_code == 200


def test_bearer_requests_carry_no_nonce(app_with, module_issuer) -> None:
    nonced = app_with(dpop_nonces=True, dpop_nonce_secret=NONCE_SECRET)
    response = nonced.get("/model", headers=bearer(module_issuer.token()))
    assert response.status_code == 200
    assert "DPoP-Nonce" not in response.headers


# --- behind a proxy: the scheme the client saw ---------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "client_saw"),
    [("127.0.0.1", "https"), ("10.9.8.7", "http")],
    ids=["from-a-trusted-proxy", "from-anyone-else"],
)
def test_forwarded_proto_counts_only_from_trusted_proxies(
    make_settings, module_issuer, bound_token, signer, trusted, client_saw
) -> None:
    """Under real uvicorn (as boot.py runs it): X-Forwarded-Proto changes the expected htu only
    when the peer is in FORWARDED_ALLOW_IPS."""
    app = create_app(make_settings(), transport=module_issuer.transport)
    with serve(app, proxy_headers=True, forwarded_allow_ips=trusted) as (host, port):
        for scheme in ("https", "http"):
            proof = signer.proof("GET", f"{scheme}://{host}:{port}/model", access_token=bound_token)
            headers = {**dpop(bound_token, proof), "X-Forwarded-Proto": "https"}
            response = httpx.get(f"http://{host}:{port}/model", headers=headers, timeout=30)
            assert response.status_code == (200 if scheme == client_saw else 401), response.text


# --- anything a client sends is a ProofError, never an exception of another kind -------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=8,
)
_members = st.dictionaries(
    st.sampled_from(["typ", "alg", "jwk", "jti", "htm", "htu", "iat", "ath", "nonce", "crit"]),
    _json_values,
    max_size=4,
)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(header=_members, claims=_members, raw=st.text(max_size=300))
def test_hostile_proofs_raise_only_proof_errors(signer, header, claims, raw) -> None:
    verifier = ProofVerifier(
        algorithms=DPOP_ALGORITHMS,
        replay=ReplayCache(1000),
        nonces=NonceSource(NONCE_SECRET.encode(), lifetime_s=300),
    )
    proofs = [raw, f"{raw}.{raw}.{raw}"]
    # joserfc refuses to sign some headers (an alg it does not know...): those only as raw text
    with contextlib.suppress(Exception):
        proofs.append(signer.proof("GET", URL, access_token="t", header=header, claims=claims))
    for proof in proofs:
        with contextlib.suppress(ProofError):
            verifier.verify(proof, method="GET", url=URL, access_token="t", jkt=signer.jkt)
