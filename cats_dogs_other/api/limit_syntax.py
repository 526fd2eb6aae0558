"""The syntax of ``RATE_LIMIT`` and ``RATE_LIMITS_BY_CLIENT``, checked when settings are read.

A limit is one ``limits`` expression such as ``600/minute`` or ``10 per second``: an amount of
images per window. Overrides are a JSON object mapping a client key (``<issuer name>:<client>``,
see :mod:`cats_dogs_other.api.rate_limits`) to such a limit. A mistake is a ``ValueError`` whose
message pydantic turns into the one-line start-up error.
"""

from __future__ import annotations

import json

from limits import RateLimitItem, parse

MAX_CLIENT_KEY_CHARS = 256


def check_limit(text: str) -> RateLimitItem:
    """One limit, at least one image per window."""
    try:
        item = parse(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a limit: write an amount per window, e.g. 600/minute or 10/second"
        ) from None
    if item.amount < 1:
        raise ValueError(f"{text!r} allows nothing: the amount must be at least 1")
    return item


def parse_overrides(text: str) -> dict[str, str]:
    """``{"client key": "limit", ...}``; every limit checked."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(
            'must be a JSON object such as {"oauth2:my-client": "60/minute"}'
        ) from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object such as {"oauth2:my-client": "60/minute"}')
    overrides: dict[str, str] = {}
    for client, limit in data.items():
        if not client or len(client) > MAX_CLIENT_KEY_CHARS:
            raise ValueError(f"client keys must be 1 to {MAX_CLIENT_KEY_CHARS} characters")
        if not isinstance(limit, str):
            raise ValueError(f"the limit of {client!r} must be a string such as '60/minute'")
        check_limit(limit)
        overrides[client] = limit.strip()
    return overrides
