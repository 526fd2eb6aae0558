"""One JSON line per request: route, status, latency, client id, request id, trace, replica.

A pure ASGI middleware (no per-request Request object, no body buffering). The request id is
taken from ``X-Request-ID`` when it looks like an id (so a proxy's id follows the request) and
echoed on the response; otherwise one is generated. The W3C ``traceparent`` is honoured the
same way (:mod:`cats_dogs_other.api.middleware.tracing`): its trace id goes on the line and the
response carries this server's ``traceparent``. Every record of the process names its replica
(``REPLICA_ID``) through :class:`ReplicaFilter`. Headers, query strings and bodies are never
logged, so a token cannot end up in the logs.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import uuid
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cats_dogs_other.api.middleware import tracing
from cats_dogs_other.api.middleware.route_template import route_template

logger = logging.getLogger("cats_dogs_other.access")

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, replica_id: str | None = None) -> None:
        self.app = app
        self.replica_id = replica_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        trace = tracing.from_header(_header(scope, tracing.HEADER))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["trace"] = trace
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ours = (REQUEST_ID_HEADER, tracing.HEADER)
                headers = [h for h in message.get("headers", []) if h[0] not in ours]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                headers.append((tracing.HEADER, trace.traceparent.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _log(scope, state, status, time.perf_counter() - started, self.replica_id)


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of ``name``; a repeated traceparent is invalid, so the first will do."""
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER and _SAFE_ID.match(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


def _log(
    scope: Scope, state: dict[str, Any], status: int, seconds: float, replica_id: str | None
) -> None:
    trace: tracing.TraceContext = state["trace"]
    fields = {
        "method": scope.get("method"),
        "route": route_template(scope),
        "status": status,
        "latency_ms": round(seconds * 1000, 2),
        "client_id": state.get("client_id"),
        "request_id": state["request_id"],
        "trace_id": trace.trace_id,
        "span_id": trace.span_id,
    }
    if replica_id is not None:
        fields["replica_id"] = replica_id
    if "auth_failure" in state:
        fields["auth_failure"] = state["auth_failure"]
    level = logging.WARNING if status >= 500 else logging.INFO
    logger.log(level, "request", extra=fields)


class ReplicaFilter(logging.Filter):
    """Adds ``replica_id`` to every record: REPLICA_ID as the settings read it (default: the
    host name), so lines from several replicas stay apart in one log store."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.replica_id = os.environ.get("REPLICA_ID", "").strip() or socket.gethostname()

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "replica_id"):
            record.replica_id = self.replica_id
        return True


def logging_config(level: str) -> dict[str, Any]:
    """dictConfig for the process (uvicorn applies it in every worker): JSON lines on stdout."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stdout",
        "filters": ["short_tracebacks", "replica"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"levelname": "level", "asctime": "time", "name": "logger"},
                # uvicorn adds an ANSI-coloured copy of its messages; a log pipeline wants none.
                "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
            }
        },
        # Start-up tracebacks only at DEBUG: the failure itself is one sentence.
        "filters": {
            "short_tracebacks": {"()": "cats_dogs_other.api.startup.ShortTracebacks"},
            "replica": {"()": "cats_dogs_other.api.middleware.access_log.ReplicaFilter"},
        },
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # uvicorn's own handlers would print plain text; route everything to the root.
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": False},
            # httpx logs one line per key fetch at INFO; keep it (URLs only, no headers).
        },
    }
