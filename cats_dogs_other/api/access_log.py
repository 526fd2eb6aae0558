"""One JSON line per request: route, status, latency, client id, request id.

A pure ASGI middleware (no per-request Request object, no body buffering). The request id is
taken from ``X-Request-ID`` when it looks like an id (so a proxy's id follows the request) and
echoed on the response; otherwise one is generated. Headers, query strings and bodies are never
logged, so a token cannot end up in the logs.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cats_dogs_other.api.route_template import route_template

logger = logging.getLogger("cats_dogs_other.access")

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _log(scope, state, status, time.perf_counter() - started)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER and _SAFE_ID.match(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


def _log(scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
    fields = {
        "method": scope.get("method"),
        "route": route_template(scope),
        "status": status,
        "latency_ms": round(seconds * 1000, 2),
        "client_id": state.get("client_id"),
        "request_id": state["request_id"],
    }
    if "auth_failure" in state:
        fields["auth_failure"] = state["auth_failure"]
    level = logging.WARNING if status >= 500 else logging.INFO
    logger.log(level, "request", extra=fields)


def logging_config(level: str) -> dict[str, Any]:
    """dictConfig for the process (uvicorn applies it in every worker): JSON lines on stdout."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stdout",
        "filters": ["short_tracebacks"],
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
        "filters": {"short_tracebacks": {"()": "cats_dogs_other.api.startup.ShortTracebacks"}},
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
