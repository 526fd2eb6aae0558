"""RATE_LIMIT, RATE_LIMITS_BY_CLIENT and the shared-state settings they need: every mistake an
operator can make stops the start with one line naming the variable and how to fix it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cats_dogs_other.api.limit_syntax import MAX_CLIENT_KEY_CHARS, check_limit, parse_overrides
from cats_dogs_other.api.settings import ConfigError, load_settings

ISSUER, AUDIENCE = "https://tenant.eu.auth0.com/", "https://api"


def refusal(**values: Any) -> ConfigError:
    """The ConfigError that ``values`` (beside a valid issuer and audience) cause."""
    with pytest.raises(ConfigError) as caught:
        load_settings(oauth2_issuer=ISSUER, oauth2_audience=AUDIENCE, **values)
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("text", "amount", "seconds"),
    [("600/minute", 600, 60), (" 10 per second ", 10, 1), ("5/2 hours", 5, 7200)],
)
def test_a_limit_is_an_amount_per_window(text: str, amount: int, seconds: int) -> None:
    item = check_limit(text)
    assert (item.amount, item.get_expiry()) == (amount, seconds)


@pytest.mark.parametrize("text", ["", "fast", "600", "minute/600", "-1/second"])
def test_what_is_not_a_limit_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="is not a limit: write an amount per window"):
        check_limit(text)


def test_a_limit_of_zero_allows_nothing_and_is_refused() -> None:
    with pytest.raises(ValueError, match="allows nothing: the amount must be at least 1"):
        check_limit("0/minute")


def test_overrides_are_a_json_object_of_checked_limits() -> None:
    text = json.dumps({"oauth2:ci": " 60/minute ", "github:repo:1": "5/second"})
    assert parse_overrides(text) == {"oauth2:ci": "60/minute", "github:repo:1": "5/second"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "must be a JSON object"),
        ('["oauth2:ci", "60/minute"]', "must be a JSON object"),
        ('{"": "60/minute"}', f"client keys must be 1 to {MAX_CLIENT_KEY_CHARS} characters"),
        (json.dumps({"k" * (MAX_CLIENT_KEY_CHARS + 1): "1/second"}), "client keys must be 1"),
        ('{"oauth2:ci": 60}', "the limit of 'oauth2:ci' must be a string"),
        ('{"oauth2:ci": "often"}', "'often' is not a limit"),
        ('{"oauth2:ci": "0/hour"}', "allows nothing"),
    ],
    ids=["not-json", "a-list", "empty-key", "long-key", "a-number", "bad-limit", "zero"],
)
def test_bad_overrides_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_overrides(text)
    assert reason in str(caught.value)


def test_settings_keep_a_stripped_limit_and_parsed_overrides() -> None:
    overrides = json.dumps({"oauth2:ci": "60/minute"})
    settings = load_settings(
        oauth2_issuer=ISSUER,
        oauth2_audience=AUDIENCE,
        rate_limit=" 600/minute ",
        rate_limits_by_client=overrides,
    )
    assert settings.rate_limit == "600/minute"
    assert settings.client_limits == {"oauth2:ci": "60/minute"}


def test_blank_limits_mean_no_limit() -> None:
    settings = load_settings(
        oauth2_issuer=ISSUER, oauth2_audience=AUDIENCE, rate_limit="  ", rate_limits_by_client=""
    )
    assert (settings.rate_limit, settings.rate_limits_by_client) == (None, None)
    assert settings.client_limits == {}


def test_a_bad_rate_limit_names_the_variable() -> None:
    error = refusal(rate_limit="lots")
    assert error.names == ("RATE_LIMIT",)
    assert "RATE_LIMIT 'lots' is not a limit" in str(error)


def test_bad_overrides_name_the_variable() -> None:
    error = refusal(rate_limits_by_client='{"oauth2:ci": 5}')
    assert error.names == ("RATE_LIMITS_BY_CLIENT",)
    assert "must be a string such as '60/minute'" in str(error)


@pytest.mark.parametrize(
    "limits",
    [{"rate_limit": "6/minute"}, {"rate_limits_by_client": '{"oauth2:ci": "6/minute"}'}],
    ids=["global", "per-client"],
)
def test_limits_with_several_workers_need_shared_state(limits: dict[str, str]) -> None:
    message = str(refusal(workers=2, **limits))
    assert "WORKERS=2 needs STATE_URL" in message
    assert "set STATE_URL=redis://... or WORKERS=1" in message


def test_limits_with_several_workers_and_shared_state_are_accepted() -> None:
    settings = load_settings(
        oauth2_issuer=ISSUER,
        oauth2_audience=AUDIENCE,
        rate_limit="6/minute",
        workers=2,
        state_url="redis://127.0.0.1:6379/0",
    )
    assert settings.workers == 2 and settings.state_url is not None


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "memcached://cache:11211", "cache"])
def test_a_state_url_must_be_redis_or_a_unix_socket(url: str) -> None:
    error = refusal(state_url=url)
    assert error.names == ("STATE_URL",)
    assert "must be a redis://, rediss:// or unix:// URL" in str(error)
    assert "unset it for in-process state" in str(error)


def test_a_state_url_is_never_echoed_in_the_refusal() -> None:
    message = str(refusal(state_url="http://user:s3cret-password@cache:6379"))
    assert "s3cret-password" not in message


@pytest.mark.parametrize("url", ["", "   "])
def test_a_blank_state_url_means_in_process_state(url: str) -> None:
    settings = load_settings(oauth2_issuer=ISSUER, oauth2_audience=AUDIENCE, state_url=url)
    assert settings.state_url is None
