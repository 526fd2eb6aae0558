"""uvicorn's HTTP/1.1 protocols, closing connections whose rejected body is still arriving.

The API answers some requests before reading their body: a missing token, a bad
``Content-Length``, a wrong content type. uvicorn 0.54 (both parsers) then discards the rest of
the body as it arrives, but each chunk cancels the keep-alive timer and nothing re-arms it once
the body ends: the idle connection stays open until the client closes it. A client that keeps
its pool (Node's, Bruno's) never exits, and anyone can hold file descriptors for free by
sending unauthenticated uploads.

These subclasses give the discarded body what nginx's lingering close gives it: the client
may finish sending (its request is not cut off, so it reads the 4xx instead of a reset), each
chunk must come within the keep-alive timeout, the whole body within
``LINGER_KEEP_ALIVES`` keep-alive timeouts, and the idle connection then times out as usual.
``HTTP_PROTOCOLS`` names them for ``uvicorn.Config(http=...)``; :func:`default_protocol` picks
httptools when installed and h11 otherwise, as uvicorn's ``auto`` does.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol as _H11Protocol

LINGER_KEEP_ALIVES = 6  # 5 s keep-alive (uvicorn's default): 30 s, nginx's lingering_time

HTTP_PROTOCOLS = {
    "h11": f"{__name__}:H11Protocol",
    "httptools": f"{__name__}:HttpToolsProtocol",
}


def default_protocol() -> str:
    """The import string of the protocol to serve with (httptools if it is installed)."""
    parser = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return HTTP_PROTOCOLS[parser]


class _Linger:
    """One discarded request body: the cycle it belongs to and the deadline for all of it."""

    def __init__(self, cycle: object, deadline: asyncio.TimerHandle) -> None:
        self.cycle = cycle
        self.deadline = deadline


class _LingeringMixin:
    """Shared by both parsers; the annotations are uvicorn's protocol attributes, which the
    concrete classes inherit, and their ``_body_pending`` (is the request body still due?)."""

    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    timeout_keep_alive: int
    timeout_keep_alive_task: asyncio.TimerHandle | None
    _linger: _Linger | None = None

    timeout_keep_alive_handler: Callable[[], None]
    _unset_keepalive_if_required: Callable[[], None]
    _body_pending: Callable[[], bool]

    def _start_linger(self) -> None:
        if self.transport.is_closing():
            return
        deadline = self.loop.call_later(
            self.timeout_keep_alive * LINGER_KEEP_ALIVES, self.timeout_keep_alive_handler
        )
        self._linger = _Linger(self.cycle, deadline)

    def _after_data(self) -> None:
        """After the parser has consumed a chunk: end the linger or keep its idle timer running."""
        linger = self._linger
        if linger is None or self.transport.is_closing():
            return
        if self.cycle is not linger.cycle:  # the body ended and a pipelined request began
            self._stop_linger()
            return
        if not self._body_pending():
            self._stop_linger()
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def _stop_linger(self) -> None:
        if self._linger is not None:
            self._linger.deadline.cancel()
            self._linger = None


class H11Protocol(_LingeringMixin, _H11Protocol):
    def _body_pending(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY

    def on_response_complete(self) -> None:
        pending = self._body_pending()
        super().on_response_complete()
        if pending:
            self._start_linger()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._after_data()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_linger()
        super().connection_lost(exc)


if importlib.util.find_spec("httptools") is not None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol

    class HttpToolsProtocol(_LingeringMixin, _HttpToolsProtocol):
        _in_message = False

        def _body_pending(self) -> bool:
            return self._in_message

        def on_message_begin(self) -> None:
            self._in_message = True
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._in_message = False
            super().on_message_complete()

        def on_response_complete(self) -> None:
            pending = self._body_pending()
            super().on_response_complete()
            if pending:
                self._start_linger()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._after_data()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_linger()
            super().connection_lost(exc)
