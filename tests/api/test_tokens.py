"""TokenValidator on its own: other asymmetric algorithms, key/alg binding, scope parsing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from cats_dogs_other.api.errors import InvalidTokenError
from cats_dogs_other.api.jwks import KeyCache
from cats_dogs_other.api.tokens import Principal, TokenValidator, scopes_of
from tests.api.support import AUDIENCE, ISSUER, SCOPE


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
