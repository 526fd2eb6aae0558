"""Client-credentials tokens: the Auth0 request shape, reuse until near expiry, the 0600 file."""

from __future__ import annotations

import json
import os
import stat
from urllib.parse import parse_qs

import httpx
import pytest
from kto.client.errors import TokenError
from kto.client.tokens import AccessToken, ClientCredentials, FileCache, MemoryCache


def credentials(servers, cache=None, **overrides) -> ClientCredentials:
    http = httpx.Client(transport=servers.transport)
    return servers.credentials(http, **({"cache": cache, "clock": servers.clock} | overrides))


def test_the_request_carries_everything_in_the_form_body(servers) -> None:
    token = credentials(servers, scope="get::prediction").token()

    (request,) = servers.requests
    assert request.method == "POST" and not request.url.query
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(request.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": [servers.client_id],
        "client_secret": [servers.client_secret],
        "audience": [servers.audience],
        "scope": ["get::prediction"],
    }
    assert token.value == "token-1"
    assert token.expires_at == servers.clock.now + servers.expires_in


def test_a_token_is_reused_until_a_minute_before_it_expires(servers) -> None:
    source = credentials(servers)
    first = source.token()
    servers.clock.now += servers.expires_in - 61
    assert source.token() is first
    servers.clock.now += 2  # now within the 60 s margin
    assert source.token().value == "token-2"
    assert servers.count("/oauth/token") == 2


def test_renew_forces_a_new_token(servers) -> None:
    source = credentials(servers)
    source.token()
    assert source.token(renew=True).value == "token-2"


def test_refusals_say_what_to_check(servers) -> None:
    with pytest.raises(TokenError, match=r"answered 401: no\. Check the client id"):
        credentials(servers, client_secret="wrong").token()


def test_an_unreachable_token_endpoint_is_a_token_error(servers) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    source = ClientCredentials(
        httpx.Client(transport=httpx.MockTransport(down)),
        token_url=servers.token_url,
        client_id="c",
        client_secret="s",
        audience="a",
    )
    with pytest.raises(TokenError, match="could not be reached"):
        source.token()


def test_the_cache_key_does_not_contain_the_secret(servers) -> None:
    cache = MemoryCache()
    source = credentials(servers, cache=cache)
    source.token()
    assert servers.client_secret not in source.cache_key
    other_audience = credentials(servers, cache=cache, audience="https://other.test")
    assert other_audience.cache_key != source.cache_key


# --- the file cache --------------------------------------------------------------------------


def test_file_cache_is_written_0600_and_reused_by_another_process(servers, tmp_path) -> None:
    path = tmp_path / "cache" / "token.json"
    credentials(servers, cache=FileCache(path)).token()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert servers.client_secret not in path.read_text()
    # A new client (as in the next step of a CI job) reads the token instead of asking again.
    token = credentials(servers, cache=FileCache(path)).token()
    assert token.value == "token-1"
    assert servers.count("/oauth/token") == 1


def test_file_cache_stays_0600_under_a_permissive_umask(servers, tmp_path) -> None:
    old = os.umask(0)
    try:
        credentials(servers, cache=FileCache(tmp_path / "token.json")).token()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "token.json").stat().st_mode) == 0o600


def test_a_file_others_can_read_is_not_trusted_and_gets_rewritten(servers, tmp_path) -> None:
    path = tmp_path / "token.json"
    planted = AccessToken("planted", "Bearer", servers.clock.now + 3600)
    source = credentials(servers, cache=FileCache(path))
    path.write_text(json.dumps({source.cache_key: planted.__dict__}))
    path.chmod(0o644)

    assert source.token().value == "token-1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"k": 1}'])
def test_a_corrupt_file_counts_as_empty(servers, tmp_path, content) -> None:
    path = tmp_path / "token.json"
    path.write_text(content)
    path.chmod(0o600)
    assert credentials(servers, cache=FileCache(path)).token().value == "token-1"


def test_expired_entries_are_dropped_when_the_file_is_rewritten(tmp_path) -> None:
    path = tmp_path / "token.json"
    FileCache(path).store("old", AccessToken("x", "Bearer", expires_at=1000.0))
    FileCache(path).store("new", AccessToken("y", "Bearer", expires_at=4_000_000_000.0))
    assert set(json.loads(path.read_text())) == {"new"}


def test_an_entry_of_another_shape_counts_as_missing(tmp_path) -> None:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"k1": {"value": "x", "colour": "red"}, "k2": ["x"]}))
    path.chmod(0o600)
    cache = FileCache(path)
    assert cache.load("k1") is None and cache.load("k2") is None
    kept = AccessToken("y", "Bearer", expires_at=4_000_000_000.0)
    cache.store("k1", kept)
    assert cache.load("k1") == kept and FileCache(path).load("k1") == kept


def test_a_failed_write_leaves_no_temporary_file(tmp_path) -> None:
    path = tmp_path / "token.json"
    path.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError):
        FileCache(path).store("k", AccessToken("x", "Bearer", expires_at=4_000_000_000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(502, text="<html>bad gateway</html>"), r"answered 502\. Check the"),
        (httpx.Response(200, json=["token"]), r"answered 200\. Check the client id"),
        (httpx.Response(200, json={"token_type": "Bearer"}), "sent no access_token"),
        (httpx.Response(200, json={"access_token": ""}), "sent no access_token"),
    ],
    ids=["not-json", "not-an-object", "no-token", "empty-token"],
)
def test_a_token_answer_without_a_token_is_a_token_error(servers, answer, message) -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda request: answer))
    with pytest.raises(TokenError, match=message):
        servers.credentials(http).token()
