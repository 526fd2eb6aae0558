"""Refuse requests whose body framing is ambiguous, and close their connection.

A request with both ``Transfer-Encoding`` and ``Content-Length`` is the raw material of request
smuggling: a proxy that trusts one header and a server that trusts the other disagree on where
the next request starts. RFC 9112 section 6.1 lets a server either refuse it or process it as
chunked and then close the connection. uvicorn's h11 parser does the latter without closing,
so this middleware answers 400 with ``Connection: close`` before the body is read, whatever
the HTTP parser (h11 or httptools), and nothing pipelined behind the request is served.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

_BODY = json.dumps(
    {"detail": "The request has both Transfer-Encoding and Content-Length; send only one."}
).encode()


class AmbiguousFramingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _ambiguous(scope["headers"]):
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_BODY)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _BODY})
            return
        await self.app(scope, receive, send)


def _ambiguous(headers: list[tuple[bytes, bytes]]) -> bool:
    names = {name.lower() for name, _ in headers}
    return b"transfer-encoding" in names and b"content-length" in names
