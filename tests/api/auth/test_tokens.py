"""TokenValidator on its own: other asymmetric algorithms, key/alg binding, scope parsing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.auth.tokens import Principal, TokenValidator, scopes_of
from cats_dogs_other.api.errors import InvalidTokenError
from cats_dogs_other.testing.issuer import AUDIENCE, ISSUER, SCOPE
from cats_dogs_other.testing.jose import b64url, raw_token


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc@clients", "exp": now + 60, "scope": SCOPE}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def validate(keys: list[Any], token: str, algorithms: list[str]) -> Principal:
    document = {"keys": [k.as_dict(private=False) for k in keys]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=document))

    async def scenario() -> Principal:
        async with httpx.AsyncClient(transport=transport) as client:
            cache = KeyCache(
                client,
                issuer=ISSUER,
                jwks_uri=ISSUER + "jwks",
                discovery_uri=ISSUER + ".well-known/openid-configuration",
                algorithms=algorithms,
            )
            validator = TokenValidator(
                cache, issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms
            )
            return await validator.validate(token)

    return asyncio.run(scenario())


@pytest.mark.parametrize("alg", ["ES256", "PS256"])
def test_other_asymmetric_algorithms_when_configured(alg: str, rsa_keys) -> None:
    if alg == "ES256":
        key: Any = ECKey.generate_key("P-256", parameters={"kid": "ec"})
    else:  # the fixture keys are bound to RS256; the same RSA key without "alg" can do PS256
        private = rsa_keys["key-2"].as_dict(private=True)
        key = RSAKey.import_key({k: v for k, v in private.items() if k != "alg"})
    token = jwt.encode({"alg": alg, "kid": key.kid}, claims(), key, algorithms=[alg])
    principal = validate([key], token, ["RS256", alg])
    assert principal == Principal("svc@clients", frozenset({SCOPE}))


def test_key_published_for_another_algorithm_is_refused(rsa_keys) -> None:
    """A JWK marked alg=RS512 only verifies RS512 tokens, even if RS256 is allowed."""
    base = {k: v for k, v in rsa_keys["key-2"].as_dict(private=True).items() if k != "alg"}
    signer = RSAKey.import_key({**base, "kid": "k512"})
    published = RSAKey.import_key({**base, "alg": "RS512", "kid": "k512"})
    token = jwt.encode({"alg": "RS256", "kid": "k512"}, claims(), signer)
    with pytest.raises(InvalidTokenError) as caught:
        validate([published], token, ["RS256", "RS512"])
    assert caught.value.reason == "key_alg"


def test_token_naming_no_client_is_refused(rsa_keys) -> None:
    key = rsa_keys["key-1"]
    token = jwt.encode({"alg": "RS256", "kid": "key-1"}, claims(sub=None), key)
    with pytest.raises(InvalidTokenError) as caught:
        validate([key], token, ["RS256"])
    assert caught.value.reason == "no_client"


def test_azp_is_preferred_to_sub(rsa_keys) -> None:
    key = rsa_keys["key-1"]
    token = jwt.encode({"alg": "RS256", "kid": "key-1"}, claims(azp="the-app"), key)
    assert validate([key], token, ["RS256"]).client_id == "the-app"


def test_encrypted_tokens_are_refused(rsa_keys) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        validate([rsa_keys["key-1"]], "a.b.c.d.e", ["RS256"])
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"scope": "a get::prediction b"}, {"a", "get::prediction", "b"}),
        ({"scope": "get::predictions"}, {"get::predictions"}),
        ({"permissions": ["get::prediction", 3, None]}, {"get::prediction"}),
        ({"scope": ["get::prediction"]}, set()),  # scope must be a string (RFC 8693)
        ({"permissions": "get::prediction"}, set()),  # permissions must be a list
        ({"scope": "x", "permissions": ["y"]}, {"x", "y"}),
    ],
)
def test_scopes_are_whole_words(body: dict[str, Any], expected: set[str]) -> None:
    assert scopes_of(body) == expected


# -- strict JOSE (RFC 7515, 7519, 7797) and bounded parsing ------------------------------------


def header_bytes(**extra: Any) -> bytes:
    return json.dumps({"alg": "RS256", "kid": "key-1", "typ": "at+jwt", **extra}).encode()


def claims_bytes(**overrides: Any) -> bytes:
    return json.dumps(claims(**overrides)).encode()


def refused_reason(rsa_keys, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        validate([rsa_keys["key-1"]], token, ["RS256"])
    return caught.value.reason


def test_a_raw_token_is_accepted_as_a_baseline(rsa_keys) -> None:
    token = raw_token(rsa_keys["key-1"], header_bytes(), claims_bytes())
    assert validate([rsa_keys["key-1"]], token, ["RS256"]).client_id == "svc@clients"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"b64": False, "crit": ["b64"]}, "unsupported_b64"),
        ({"b64": True}, "unsupported_b64"),
        ({"crit": ["exp"]}, "unsupported_crit"),
        (
            {"crit": ["http://example.com/unknown"], "http://example.com/unknown": 1},
            "unsupported_crit",
        ),
    ],
)
def test_unencoded_payload_and_unknown_critical_headers_are_refused(
    rsa_keys, extra, reason
) -> None:
    token = raw_token(rsa_keys["key-1"], header_bytes(**extra), claims_bytes())
    assert refused_reason(rsa_keys, token) == reason


@pytest.mark.parametrize(
    "header",
    [
        json.dumps({"alg": "RS256", "kid": "key-1"}).encode("utf-16"),  # not UTF-8
        b'{"alg": "RS256", "kid": "key-1", "x": "\xff"}',  # not UTF-8 either
        b'{"alg": "RS256", "kid": "key-1", "alg": "RS256"}',  # duplicate name
        b'{"alg": "RS256", "kid": "key-1", "x": ' + b"[" * 1500 + b"]" * 1500 + b"}",  # deep
    ],
    ids=["utf-16", "invalid-utf-8", "duplicate-name", "nested-1500"],
)
def test_unreadable_headers_are_invalid_tokens(rsa_keys, header: bytes) -> None:
    assert (
        refused_reason(rsa_keys, raw_token(rsa_keys["key-1"], header, claims_bytes()))
        == "malformed"
    )


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sub": "a", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"sub": "a", "sub": "b"}',
        '{"sub": "é"}'.encode("latin-1"),
    ],
    ids=["nested-2000", "duplicate-claim", "latin-1"],
)
def test_unreadable_claims_of_a_validly_signed_token_are_invalid_tokens(rsa_keys, payload) -> None:
    assert (
        refused_reason(rsa_keys, raw_token(rsa_keys["key-1"], header_bytes(), payload))
        == "malformed"
    )


@pytest.mark.parametrize(
    "scope",
    [
        "get::prediction\tother",
        "other\nget::prediction",
        "get::prediction\u00a0x",
        "\u3000get::prediction",
    ],
)
def test_scopes_are_split_on_spaces_only(scope: str) -> None:
    assert SCOPE not in scopes_of({"scope": scope})
    assert scopes_of({"scope": f"  {SCOPE}  other "}) == {SCOPE, "other"}


def test_keys_of_different_types_under_one_kid_are_chosen_by_algorithm(rsa_keys) -> None:
    rsa = RSAKey.import_key({**rsa_keys["key-2"].as_dict(private=True), "kid": "shared"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "shared"})
    for key, alg in ((rsa, "RS256"), (ec, "ES256")):
        token = jwt.encode({"alg": alg, "kid": "shared"}, claims(), key, algorithms=[alg])
        assert validate([ec, rsa], token, ["RS256", "ES256"]).client_id == "svc@clients"


def test_rsa_keys_under_2048_bits_are_not_used(rsa_keys) -> None:
    with pytest.warns(Warning):  # joserfc itself warns when generating one
        weak = RSAKey.generate_key(1024, parameters={"kid": "weak"})
    token = jwt.encode({"alg": "RS256", "kid": "weak"}, claims(), weak, algorithms=["RS256"])
    with pytest.raises(InvalidTokenError) as caught:
        validate([rsa_keys["key-1"], weak], token, ["RS256"])
    assert caught.value.reason == "unknown_kid"


def test_an_ec_key_on_another_curve_does_not_verify_es256() -> None:
    p384 = ECKey.generate_key("P-384", parameters={"kid": "ec"})
    p256 = ECKey.generate_key("P-256", parameters={"kid": "other"})
    token = jwt.encode({"alg": "ES384", "kid": "ec"}, claims(), p384, algorithms=["ES384"])
    forged_alg = token.replace(
        token.split(".")[0], b64url(json.dumps({"alg": "ES256", "kid": "ec"}).encode()), 1
    )
    with pytest.raises(InvalidTokenError) as caught:
        validate([p384, p256], forged_alg, ["ES256", "ES384"])
    assert caught.value.reason == "key_alg"
