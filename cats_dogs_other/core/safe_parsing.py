"""Bounded parsing of what the API reads from outside: JOSE segments and JSON documents.

Why one module: every parser boundary (a token's header and claims, a key set, a discovery
document, a DPoP proof) needs the same guards, and a guard forgotten in one place is a 500 or a
CPU sink. Each helper caps the size *before* parsing, turns every parser failure (including
``RecursionError`` from deeply nested JSON) into :class:`UnsafeInputError` with a short reason,
and returns only what the caller can use. Callers map that one exception to their own answer
(401 ``invalid_token`` for a token, "keys unavailable" for the issuer's documents).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

MAX_JSON_DEPTH = 32  # real headers, claims and key sets nest 3 or 4 levels
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class UnsafeInputError(ValueError):
    """The input is too large, too deep, badly encoded or not the expected JSON object."""


def decode_base64url(segment: str, *, max_bytes: int) -> bytes:
    """Strict unpadded base64url (RFC 7515 section 2): no padding, no other alphabet."""
    if len(segment) > max_bytes * 4 // 3 + 4:
        raise UnsafeInputError(f"larger than {max_bytes} bytes")
    if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise UnsafeInputError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise UnsafeInputError("not unpadded base64url") from None


def parse_json_object(
    data: bytes | str,
    *,
    max_bytes: int,
    max_depth: int = MAX_JSON_DEPTH,
    unique_keys: bool = False,
) -> dict[str, Any]:
    """A JSON object from UTF-8 ``data`` of at most ``max_bytes``, nested at most ``max_depth``.

    ``unique_keys`` refuses duplicate member names, as RFC 7515 section 4 and RFC 7519
    section 4 allow for JOSE headers and claims (otherwise the last one wins, like ``json``).
    NaN and Infinity literals are refused: they are not JSON (RFC 8259).
    """
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise UnsafeInputError(f"larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeInputError("not UTF-8") from None
    hook = _unique_object if unique_keys else None
    try:
        value = json.loads(text, object_pairs_hook=hook, parse_constant=_refuse_constant)
    except RecursionError:
        raise UnsafeInputError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, duplicates, constants, huge integers
        raise UnsafeInputError(f"not JSON ({_first_line(exc)})") from None
    if not isinstance(value, dict):
        raise UnsafeInputError("not a JSON object")
    if _depth_exceeds(value, max_depth):
        raise UnsafeInputError(f"nested deeper than {max_depth} levels")
    return value


def decode_jose_segment(segment: str, *, max_bytes: int) -> dict[str, Any]:
    """A JOSE header or JWT claims segment: base64url of a UTF-8 JSON object, unique names."""
    return parse_json_object(
        decode_base64url(segment, max_bytes=max_bytes), max_bytes=max_bytes, unique_keys=True
    )


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """Iterative, so a deep value cannot overflow the stack here either."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
