"""Text that came from a server, made safe to print: cut short and with controls escaped.

An API or issuer answer is untrusted input to a terminal and to CI logs. ESC and the other C0
and C1 controls can move the cursor, rewrite earlier lines or set the window title; a CR or the
bidi controls (U+202E...) can make a line read differently from what it holds. They are shown
escaped (``\\x1b``, ``\\u202e``). A server's error ``detail`` is cut at :data:`DETAIL_LIMIT`
characters so that one answer cannot flood the output.
"""

from __future__ import annotations

DETAIL_LIMIT = 300
# Unicode's Bidi_Control characters: ALM, LRM, RLM, LRE..RLO, LRI..PDI.
BIDI_CONTROLS = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROLS = (*range(0x20), 0x7F, *range(0x80, 0xA0), *BIDI_CONTROLS)
_ESCAPES = {code: chr(code).encode("unicode_escape").decode("ascii") for code in _CONTROLS}


def escape_controls(text: str) -> str:
    """``text`` with every C0, C1 and bidi control written as a Python escape (``\\x1b``)."""
    return text.translate(_ESCAPES)


def shorten(text: str, limit: int = DETAIL_LIMIT) -> str:
    """``text`` cut at ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def from_server(text: str, limit: int = DETAIL_LIMIT) -> str:
    """A server's message as the client shows it: cut short, then escaped."""
    return escape_controls(shorten(text, limit))
