"""The bounded parsers every outside-facing boundary uses: size, depth, encoding, JSON shape."""

from __future__ import annotations

import time

import pytest

from cats_dogs_other.core.safe_parsing import (
    MAX_JSON_DEPTH,
    UnsafeInputError,
    decode_base64url,
    decode_jose_segment,
    parse_json_object,
)
from cats_dogs_other.testing.jose import b64url


def refused(reason: str, call, *args, **kwargs) -> None:
    with pytest.raises(UnsafeInputError, match=reason):
        call(*args, **kwargs)


def test_a_plain_object_is_returned() -> None:
    assert parse_json_object(b'{"a": [1, {"b": null}]}', max_bytes=100) == {"a": [1, {"b": None}]}


def test_size_is_checked_before_parsing() -> None:
    refused("larger than 10 bytes", parse_json_object, b"{" * 11, max_bytes=10)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 200_000])
def test_deep_nesting_is_refused_quickly_whatever_the_depth(depth: int) -> None:
    document = '{"a":' + "[" * depth + "]" * depth + "}"
    started = time.perf_counter()
    refused("nested deeper", parse_json_object, document, max_bytes=10**6)
    assert time.perf_counter() - started < 1.0


def test_not_utf8_is_refused_even_if_json_could_guess_the_encoding() -> None:
    # json.loads(bytes) would detect UTF-16 and accept this
    refused("not UTF-8", parse_json_object, '{"alg":"RS256"}'.encode("utf-16"), max_bytes=100)
    refused("not UTF-8", parse_json_object, b'{"a":"\xff"}', max_bytes=100)


@pytest.mark.parametrize("text", ["[1]", '"s"', "3", "null"])
def test_only_objects(text: str) -> None:
    refused("not a JSON object", parse_json_object, text, max_bytes=100)


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": 1', "1" * 5000])
def test_not_json_is_refused(text: str) -> None:
    refused("not JSON", parse_json_object, text, max_bytes=10_000)


def test_duplicate_names_are_refused_only_when_asked() -> None:
    text = '{"alg": "RS256", "alg": "none"}'
    assert parse_json_object(text, max_bytes=100) == {"alg": "none"}
    refused("duplicate", parse_json_object, text, max_bytes=100, unique_keys=True)


@pytest.mark.parametrize("segment", ["eyJ=", "ey+/", "a", "e y", "éé"])
def test_base64url_is_strict(segment: str) -> None:
    refused("base64url", decode_base64url, segment, max_bytes=100)


def test_base64url_size_is_checked_before_decoding() -> None:
    refused("larger than", decode_base64url, "A" * 1000, max_bytes=100)


def test_jose_segment() -> None:
    assert decode_jose_segment(b64url(b'{"alg":"RS256"}'), max_bytes=100) == {"alg": "RS256"}
    refused("duplicate", decode_jose_segment, b64url(b'{"a":1,"a":2}'), max_bytes=100)
