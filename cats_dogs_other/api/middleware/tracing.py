"""W3C Trace Context (``traceparent``): the trace a request belongs to, for logs across replicas.

A valid incoming ``traceparent`` keeps its trace id; this server's span gets a new parent id.
An absent or invalid one (wrong shape, upper-case hex, an all-zero id, version ``ff``) is
replaced by a new trace, as the recommendation says. ``tracestate`` is not used.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

HEADER = b"traceparent"
# version-traceid-parentid-flags; versions above 00 may append fields after another dash.
_TRACEPARENT = re.compile(
    rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?$"
)
_ZERO_TRACE, _ZERO_SPAN = b"0" * 32, b"0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str  # this server's span: the parent id it passes on
    flags: str

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def from_header(value: bytes | None) -> TraceContext:
    """The request's trace (a new one when ``value`` is absent or invalid)."""
    span_id = secrets.token_hex(8)
    match = _TRACEPARENT.match(value) if value is not None and len(value) <= 512 else None
    if match is not None:
        version, trace_id, parent_id, flags, rest = match.groups()
        valid = (
            version != b"ff"
            and not (version == b"00" and rest)
            and trace_id != _ZERO_TRACE
            and parent_id != _ZERO_SPAN
        )
        if valid:
            return TraceContext(trace_id.decode(), span_id, flags.decode())
    return TraceContext(secrets.token_hex(16), span_id, "00")
