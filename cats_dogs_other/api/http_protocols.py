"""uvicorn's HTTP/1.1 protocols with deadlines on what the client sends outside a request.

uvicorn 0.54 (both parsers) bounds only the idle time between requests (the keep-alive
timeout), and even that one is lost in two cases, so a client can hold a connection, and its
file descriptor, for as long as it likes:

- **A slow request head.** Nothing limits how long a request line and headers take to arrive,
  nor how long a new connection may stay silent (the "slowloris" attack).
- **A body the API answered before reading.** The API refuses some requests before their body:
  a missing token, a bad ``Content-Length``, a wrong content type. uvicorn then discards the rest
  of the body as it arrives, but each chunk cancels the keep-alive timer and nothing re-arms it
  once the body ends: the idle connection stays open until the client closes it. A client that
  keeps its pool (Node's, Bruno's) never exits.

These subclasses give a request head ``DEADLINE_KEEP_ALIVES`` keep-alive timeouts (30 s with
uvicorn's 5 s default) from its first byte, or from the connection's opening, and give a
discarded body what nginx's lingering close gives it: the client may finish sending it (so it
reads the 4xx, not a reset), each chunk must come within the keep-alive timeout and the whole
body within the same deadline, and the idle connection then times out as usual. A request
being answered is never cut off: its body is the application's to bound.

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

DEADLINE_KEEP_ALIVES = 6  # x uvicorn's 5 s keep-alive: 30 s, nginx's lingering_time
_HAS_HTTPTOOLS = importlib.util.find_spec("httptools") is not None

HTTP_PROTOCOLS = {
    "h11": f"{__name__}:H11Protocol",
    "httptools": f"{__name__}:HttpToolsProtocol",
}


def default_protocol() -> str:
    """The import string of the protocol to serve with (httptools if it is installed)."""
    return HTTP_PROTOCOLS["httptools" if _HAS_HTTPTOOLS else "h11"]


class _Linger:
    """One discarded request body: the cycle it belongs to and the deadline for all of it."""

    def __init__(self, cycle: object, deadline: asyncio.TimerHandle) -> None:
        self.cycle = cycle
        self.deadline = deadline


class _DeadlinesMixin(asyncio.Protocol):
    """The deadlines, shared by both parsers: placed before uvicorn's class, so ``super()`` is
    uvicorn's. The annotations are uvicorn's protocol attributes, which the concrete classes
    inherit, and the parser-specific questions they answer."""

    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    timeout_keep_alive: int
    timeout_keep_alive_task: asyncio.TimerHandle | None
    timeout_keep_alive_handler: Callable[[], None]
    _unset_keepalive_if_required: Callable[[], None]
    _head_pending: Callable[[], bool]  # part of a request head is in, not all of it
    _body_pending: Callable[[], bool]  # the current request's body is not all in
    _head_deadline: asyncio.TimerHandle | None = None
    _linger: _Linger | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._watch_head()  # a silent new connection is a head that is late

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_complete()
        self._stop_linger()
        super().connection_lost(exc)

    def _deadline_s(self) -> float:
        return float(self.timeout_keep_alive * DEADLINE_KEEP_ALIVES)

    def _received(self) -> None:
        """After the parser has consumed a chunk."""
        if self.transport.is_closing():
            return
        if self._head_pending():
            self._watch_head()
        else:
            self._head_complete()
        if self._linger is not None:
            self._lingered()

    def _responded(self, body_pending: bool) -> None:
        """After uvicorn's ``on_response_complete``, told whether the body was still due."""
        if body_pending and not self.transport.is_closing():
            deadline = self.loop.call_later(self._deadline_s(), self.timeout_keep_alive_handler)
            self._linger = _Linger(self.cycle, deadline)

    def _watch_head(self) -> None:
        if self._head_deadline is None and not self.transport.is_closing():
            self._head_deadline = self.loop.call_later(self._deadline_s(), self._head_overdue)

    def _head_complete(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._watch_head()  # a pipelined head behind a request still being answered
            return
        self.timeout_keep_alive_handler()

    def _lingered(self) -> None:
        """End the linger once the body is in (or a pipelined request began); until then,
        keep its idle timer running, which each chunk cancelled."""
        linger = self._linger
        assert linger is not None
        if self.cycle is not linger.cycle:
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


class H11Protocol(_DeadlinesMixin, _H11Protocol):
    def _head_pending(self) -> bool:
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _body_pending(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY

    def on_response_complete(self) -> None:
        pending = self._body_pending()
        super().on_response_complete()
        self._responded(pending)


if _HAS_HTTPTOOLS:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol

    class HttpToolsProtocol(_DeadlinesMixin, _HttpToolsProtocol):
        _in_head = False
        _in_message = False

        def _head_pending(self) -> bool:
            return self._in_head

        def _body_pending(self) -> bool:
            return self._in_message

        def on_message_begin(self) -> None:
            self._in_head = self._in_message = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_message = False
            super().on_message_complete()

        def on_response_complete(self) -> None:
            pending = self._body_pending()
            super().on_response_complete()
            self._responded(pending)
