"""Every token rule, through HTTP, against the real app.

Tokens are signed here with RSA keys generated in the fixtures; the issuer's keys are served by
an httpx.MockTransport the app's lifespan-owned client talks to.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from cats_dogs_other.testing.issuer import AUDIENCE, ISSUER, SCOPE, FakeIssuer, valid_claims
from cats_dogs_other.testing.jose import b64json, b64url, random_kid, raw_token
from tests.api.support import bearer

REALM = 'Bearer realm="cats-dogs-other"'


def assert_invalid_token(response, fragment: str) -> None:
    """401 per RFC 6750 3.1: invalid_token plus a description a person can act on."""
    assert response.status_code == 401, response.text
    challenge = response.headers.get_list("WWW-Authenticate")[0]
    assert challenge.startswith(REALM + ", ")
    assert 'error="invalid_token"' in challenge
    assert f'error_description="{response.json()["detail"]}"' in challenge
    assert fragment in response.json()["detail"]


# --- a valid token, and the accepted variants -----------------------------------------------


def test_valid_token_reaches_the_model(client: TestClient, module_issuer: FakeIssuer) -> None:
    response = client.get("/model", headers=bearer(module_issuer.token()))
    assert response.status_code == 200
    assert response.json()["classes"] == ["Cat", "Dog", "Other"]


def test_audience_list_containing_ours_is_accepted(client, module_issuer) -> None:
    token = module_issuer.token(aud=["https://other-api.test", AUDIENCE])
    assert client.get("/model", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "application/at+jwt", None])
def test_access_token_types_are_accepted(client, module_issuer, typ) -> None:
    token = module_issuer.token(header={"typ": typ} if typ else {})
    if typ is None:  # joserfc adds typ=JWT by default; build one without it
        token = jwt.encode(
            {"alg": "RS256", "kid": "key-1"},
            valid_claims(),
            module_issuer.keys["key-1"],
            default_type=None,
        )
    assert client.get("/model", headers=bearer(token)).status_code == 200


def test_permissions_only_token_is_accepted(client, module_issuer) -> None:
    """Auth0 RBAC puts the scope in `permissions` and may leave `scope` out."""
    token = module_issuer.token(scope=None, permissions=["read:other", SCOPE])
    assert client.get("/model", headers=bearer(token)).status_code == 200


def test_scope_among_others_is_accepted(client, module_issuer) -> None:
    token = module_issuer.token(scope=f"openid {SCOPE} profile")
    assert client.get("/model", headers=bearer(token)).status_code == 200


def test_small_clock_skew_within_leeway_is_accepted(client, module_issuer) -> None:
    now = int(time.time())
    token = module_issuer.token(iat=now + 30, nbf=now + 30, exp=now - 30 + 600)
    assert client.get("/model", headers=bearer(token)).status_code == 200


# --- RFC 6750: missing credentials -----------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer "}, {"Authorization": "Basic dTpw"}],
    ids=["none", "empty", "empty-bearer", "basic"],
)
def test_missing_credentials_get_a_bare_challenge(client, headers) -> None:
    """One bare challenge per accepted scheme: Bearer, and DPoP (tests/api/dpop/test_dpop.py)."""
    response = client.get("/model", headers=headers)
    assert response.status_code == 401
    assert response.headers.get_list("WWW-Authenticate")[0] == REALM
    assert "Bearer" in response.json()["detail"]


def test_upload_requires_a_token_before_reading_the_body(client, images) -> None:
    response = client.post("/upload", files={"file": ("a.png", images["red"], "image/png")})
    assert response.status_code == 401
    assert response.headers.get_list("WWW-Authenticate")[0] == REALM


# --- time claims -----------------------------------------------------------------------------


def test_expired_token(client, module_issuer) -> None:
    token = module_issuer.token(iat=int(time.time()) - 3600, exp=int(time.time()) - 120)
    assert_invalid_token(client.get("/model", headers=bearer(token)), "expired")


def test_not_yet_valid_token(client, module_issuer) -> None:
    token = module_issuer.token(nbf=int(time.time()) + 600)
    assert_invalid_token(client.get("/model", headers=bearer(token)), "not valid yet")


def test_iat_in_the_future(client, module_issuer) -> None:
    """oidc-jwt-validation 0.4.2 accepts an iat a day ahead (compare/, case iat-future)."""
    token = module_issuer.token(iat=int(time.time()) + 86400)
    assert_invalid_token(client.get("/model", headers=bearer(token)), "issued in the future")


def test_missing_exp(client, module_issuer) -> None:
    token = module_issuer.token(exp=None)
    assert_invalid_token(client.get("/model", headers=bearer(token)), "exp")


# --- issuer and audience ---------------------------------------------------------------------


def test_wrong_issuer(client, module_issuer) -> None:
    token = module_issuer.token(iss="https://evil.test/")
    assert_invalid_token(client.get("/model", headers=bearer(token)), "issuer")


def test_issuer_without_trailing_slash_is_another_issuer(client, module_issuer) -> None:
    token = module_issuer.token(iss=ISSUER.rstrip("/"))
    assert_invalid_token(client.get("/model", headers=bearer(token)), "issuer")


def test_missing_issuer(client, module_issuer) -> None:
    token = module_issuer.token(iss=None)
    assert_invalid_token(client.get("/model", headers=bearer(token)), "iss")


def test_wrong_audience(client, module_issuer) -> None:
    token = module_issuer.token(aud="https://other-api.test")
    assert_invalid_token(client.get("/model", headers=bearer(token)), "audience")


def test_audience_list_without_ours(client, module_issuer) -> None:
    token = module_issuer.token(aud=["https://a.test", "https://b.test"])
    assert_invalid_token(client.get("/model", headers=bearer(token)), "audience")


def test_missing_audience(client, module_issuer) -> None:
    """oidc-jwt-validation 0.4.2 accepts tokens with no aud at all (compare/, no-audience)."""
    token = module_issuer.token(aud=None)
    assert_invalid_token(client.get("/model", headers=bearer(token)), "aud")


# --- algorithms, keys and signatures ---------------------------------------------------------


def test_alg_none_is_refused(client) -> None:
    token = f"{b64json({'alg': 'none', 'kid': 'key-1', 'typ': 'JWT'})}.{b64json(valid_claims())}."
    assert_invalid_token(client.get("/model", headers=bearer(token)), "algorithm")


def test_hs256_signed_with_the_public_key_is_refused(client, module_issuer) -> None:
    """Algorithm confusion: the public key used as an HMAC secret."""
    public_pem = module_issuer.keys["key-1"].as_pem(private=False)
    signing_input = (
        f"{b64json({'alg': 'HS256', 'kid': 'key-1', 'typ': 'JWT'})}.{b64json(valid_claims())}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    assert_invalid_token(client.get("/model", headers=bearer(token)), "algorithm")


def test_es256_is_refused_when_only_rs256_is_allowed(client) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "key-1"})
    token = jwt.encode({"alg": "ES256", "kid": "key-1"}, valid_claims(), key, algorithms=["ES256"])
    assert_invalid_token(client.get("/model", headers=bearer(token)), "algorithm")


def test_missing_kid_is_refused(client, module_issuer) -> None:
    token = jwt.encode({"alg": "RS256"}, valid_claims(), module_issuer.keys["key-1"])
    assert_invalid_token(client.get("/model", headers=bearer(token)), "kid")


def test_right_kid_but_another_key(client, module_issuer) -> None:
    token = module_issuer.token("key-1", signing_key="attacker")
    assert_invalid_token(client.get("/model", headers=bearer(token)), "signature")


def test_payload_edited_after_signing(client, module_issuer) -> None:
    header, _, signature = module_issuer.token(scope="").split(".")
    forged = f"{header}.{b64json(valid_claims(scope=SCOPE, azp='admin'))}.{signature}"
    assert_invalid_token(client.get("/model", headers=bearer(forged)), "signature")


def test_embedded_jwk_and_jku_are_never_followed(client, module_issuer) -> None:
    """An attacker's own key in the header (jwk) or URL (jku, x5u) must not be used."""
    attacker = module_issuer.keys["attacker"]
    header = {
        "jwk": attacker.as_dict(private=False),
        "jku": "https://attacker.test/jwks.json",
        "x5u": "https://attacker.test/cert.pem",
    }
    token = module_issuer.token("attacker", header=header)
    response = client.get("/model", headers=bearer(token))
    assert_invalid_token(response, "key the issuer does not publish")
    assert "attacker.test" not in module_issuer.hosts()


def test_token_over_8_kib_is_refused_before_parsing(client, module_issuer) -> None:
    token = module_issuer.token(padding="x" * 9000)  # validly signed, just too big
    assert_invalid_token(client.get("/model", headers=bearer(token)), "8 KiB")


@pytest.mark.parametrize(
    "token", [b"abc", b"a.b", b"a.b.c", b"a.b.c.d.e", "é.é.é".encode(), b"e30.e30.e30"]
)
def test_garbage_tokens_get_invalid_token(client, token: bytes) -> None:
    response = client.get("/model", headers={"Authorization": b"Bearer " + token})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_wrong_typ_header_is_refused(client, module_issuer) -> None:
    token = module_issuer.token(header={"typ": "id_token+jwt"})
    assert_invalid_token(client.get("/model", headers=bearer(token)), "typ")


# --- scope -----------------------------------------------------------------------------------


def _assert_insufficient_scope(response) -> None:
    assert response.status_code == 403
    challenge = response.headers.get_list("WWW-Authenticate")[0]
    assert challenge.startswith(REALM + ", ")
    assert 'error="insufficient_scope"' in challenge
    assert f'scope="{SCOPE}"' in challenge


def test_missing_scope(client, module_issuer) -> None:
    _assert_insufficient_scope(
        client.get("/model", headers=bearer(module_issuer.token(scope=None)))
    )


@pytest.mark.parametrize("scope", ["get::predictions", "get::prediction:all", "get:prediction"])
def test_near_miss_scope_is_refused(client, module_issuer, scope) -> None:
    response = client.get("/model", headers=bearer(module_issuer.token(scope=scope)))
    _assert_insufficient_scope(response)


def test_scope_in_a_permissions_string_is_not_a_list(client, module_issuer) -> None:
    token = module_issuer.token(scope=None, permissions="get::predictions")
    _assert_insufficient_scope(client.get("/model", headers=bearer(token)))


def test_missing_scope_on_upload(client, module_issuer, images) -> None:
    token = module_issuer.token(scope="read:other")
    response = client.post(
        "/upload", headers=bearer(token), files={"file": ("a.png", images["red"], "image/png")}
    )
    _assert_insufficient_scope(response)


# --- unknown keys do not hammer the issuer ---------------------------------------------------


def test_random_kid_flood_fetches_at_most_once_per_cooldown(client, module_issuer) -> None:
    """The default cooldown is 30 s: 30 unknown kids in a row cost at most one refetch."""
    assert client.get("/model", headers=bearer(module_issuer.token())).status_code == 200
    before = module_issuer.jwks_fetches
    for _ in range(30):
        token = module_issuer.token(random_kid(), signing_key="attacker")
        assert client.get("/model", headers=bearer(token)).status_code == 401
    assert module_issuer.jwks_fetches - before <= 1


# --- hostile headers: never a 500 (RFC 7515, RFC 6750) ---------------------------------------


@pytest.mark.parametrize("depth", [200, 3_000])
def test_deeply_nested_header_is_an_invalid_token_not_a_500(client, depth: int) -> None:
    header = b'{"alg":"RS256","kid":"key-1","x":' + b"[" * depth + b"]" * depth + b"}"
    token = f"{b64url(header)}.{b64json({'sub': 'x'})}.c2ln"
    assert_invalid_token(client.get("/model", headers=bearer(token)), "nested deeper")


def test_deeply_nested_claims_of_a_signed_token_are_an_invalid_token(client, module_issuer) -> None:
    key = module_issuer.keys["key-1"]
    payload = b'{"sub":"x","x":' + b"[" * 2_000 + b"]" * 2_000 + b"}"
    token = raw_token(key, b'{"alg":"RS256","kid":"key-1"}', payload)
    assert_invalid_token(client.get("/model", headers=bearer(token)), "claims are not readable")


def test_unencoded_payload_option_is_refused(client, module_issuer) -> None:
    key = module_issuer.keys["key-1"]
    header = b'{"alg":"RS256","kid":"key-1","b64":false,"crit":["b64"]}'
    token = raw_token(key, header, b'{"sub":"x"}')
    assert_invalid_token(client.get("/model", headers=bearer(token)), "b64")


def test_two_authorization_headers_are_a_bad_request(client, module_issuer) -> None:
    token = module_issuer.token()
    for second in (token, "Bearer other", "Basic eDp5"):
        response = client.get(
            "/model", headers=[("Authorization", f"Bearer {token}"), ("Authorization", second)]
        )
        assert response.status_code == 400, response.text
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith(REALM + ", ") and 'error="invalid_request"' in challenge
        assert "one Authorization header" in response.json()["detail"]
