"""The issuer router: a token's unverified ``iss`` picks exactly one trusted issuer's validator,
with the claims it already parsed; any other ``iss`` is refused before a key is looked up."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, cast

import pytest

from cats_dogs_other.api.auth.issuers import IssuerRouter, Verifier, unverified_issuer
from cats_dogs_other.api.auth.tokens import UNKNOWN_ISSUER, Principal, TokenValidator
from cats_dogs_other.api.errors import InvalidTokenError

DEFAULT, GITHUB = "https://tenant.test/", "https://token.actions.githubusercontent.com"


def unsigned(claims: dict[str, Any]) -> str:
    """A compact JWS shape whose signature nobody checks here: the router reads claims only."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2ln"


class Recorder:
    """A validator that records what it was asked to validate and accepts it."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    async def validate(self, token: str, payload: dict[str, Any] | None = None) -> Principal:
        self.calls.append((token, payload))
        return Principal(self.issuer, frozenset())


def router() -> tuple[IssuerRouter, Recorder, Recorder]:
    default, github = Recorder(DEFAULT), Recorder(GITHUB)
    routes = IssuerRouter(cast(TokenValidator, default), {GITHUB: cast(Verifier, github)})
    return routes, default, github


def test_each_token_goes_to_the_issuer_it_names_with_its_parsed_claims() -> None:
    routes, default, github = router()
    assert routes.issuers == frozenset({DEFAULT, GITHUB})
    to_github = unsigned({"iss": GITHUB, "repository_id": "1"})
    to_default = unsigned({"iss": DEFAULT, "azp": "ci"})

    assert asyncio.run(routes.validate(to_github)).client_id == GITHUB
    assert asyncio.run(routes.validate(to_default)).client_id == DEFAULT
    assert github.calls == [(to_github, {"iss": GITHUB, "repository_id": "1"})]
    assert default.calls == [(to_default, {"iss": DEFAULT, "azp": "ci"})]


@pytest.mark.parametrize(
    "claims",
    [{"iss": "https://evil.test/"}, {"iss": DEFAULT.rstrip("/")}, {"iss": 7}, {"sub": "x"}],
    ids=["unknown", "no-trailing-slash", "not-a-string", "missing"],
)
def test_any_other_issuer_is_refused_before_any_validator(claims: dict[str, Any]) -> None:
    routes, default, github = router()
    with pytest.raises(InvalidTokenError) as caught:
        asyncio.run(routes.validate(unsigned(claims)))
    assert (caught.value.message, caught.value.reason) == (UNKNOWN_ISSUER, "invalid_iss")
    assert default.calls == [] and github.calls == []


def test_one_issuer_alone_validates_without_reading_the_token_first() -> None:
    default = Recorder(DEFAULT)
    routes = IssuerRouter(cast(TokenValidator, default), {})
    asyncio.run(routes.validate("not-even-a-jwt"))
    assert default.calls == [("not-even-a-jwt", None)]


@pytest.mark.parametrize("token", ["a.b", "a.!!!.c", "x" * 9000])
def test_an_unreadable_token_names_no_issuer(token: str) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        unverified_issuer(token)
    assert caught.value.reason in {"malformed", "too_large"}
