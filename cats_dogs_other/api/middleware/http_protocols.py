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

They also hold every request head to :mod:`~cats_dogs_other.api.middleware.request_head`'s limits
and ``Host`` rule, whatever the parser: a head that breaks one is answered (414, 431 or 400) before
the app sees it, and the connection is closed. Until then the rest of what the client sends is
read and dropped (so it can read the answer rather than a reset), for at most the deadline.

``HTTP_PROTOCOLS`` names them for ``uvicorn.Config(http=...)``; :func:`default_protocol` picks
httptools when installed and h11 otherwise, as uvicorn's ``auto`` does.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol as _H11Protocol

from cats_dogs_other.api.middleware.request_head import (
    MAX_FIELDS,
    MAX_HEAD_BYTES,
    MAX_LINE_BYTES,
    HeadRefused,
    HeadScanner,
    check_host,
    head_too_large,
    line_too_long,
    missing_host,
    refusal,
    several_hosts,
    too_many_fields,
)

logger = logging.getLogger(__name__)

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
    send_400_response: Callable[[str], None]
    _head_deadline: asyncio.TimerHandle | None = None
    _linger: _Linger | None = None
    _refusal: HeadRefused | None = None  # set just before a parser callback raises
    _discarding = False  # a head was refused: what still comes is dropped
    _discard_timer: asyncio.TimerHandle | None = None
    _discard_until = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._watch_head()  # a silent new connection is a head that is late

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            self._arm_discard()
            return
        super().data_received(data)
        if not self._discarding:
            self._received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_complete()
        self._stop_linger()
        if self._discard_timer is not None:
            self._discard_timer.cancel()
        super().connection_lost(exc)

    def _refused(self, msg: str) -> bool:
        """Called by ``send_400_response``, uvicorn's answer to any parser error: True if the
        error was one of our refusals, now answered."""
        refused, self._refusal = self._refusal, None
        if refused is None:
            return False
        self._refuse(refused)
        return True

    def _refuse(self, refused: HeadRefused) -> None:
        """Answer ``refused`` and close; drop what comes until then. A request still being
        answered keeps its answer, and the connection closes after it instead."""
        logger.info("request head refused (%d): %s", refused.status, refused.message)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        else:
            self.transport.write(refusal(refused.status, refused.message))
            if self.transport.can_write_eof():
                self.transport.write_eof()
        self._discarding = True
        self._head_complete()
        self._stop_linger()
        self._unset_keepalive_if_required()
        self._discard_until = self.loop.time() + self._deadline_s()
        self._arm_discard()

    def _arm_discard(self) -> None:
        """Close once the client is silent for a keep-alive timeout, or at the deadline."""
        if self._discard_timer is not None:
            self._discard_timer.cancel()
        delay = min(self.timeout_keep_alive, max(0.0, self._discard_until - self.loop.time()))
        self._discard_timer = self.loop.call_later(delay, self.transport.close)

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


class _BoundedConnection(h11.Connection):
    """h11's connection, each head run through a :class:`HeadScanner` before h11 parses it
    (h11's own buffer bound, 16 KiB by default, is raised to the scanner's 32 KiB)."""

    refusal: HeadRefused | None = None

    def __init__(self) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    def next_event(self) -> Any:
        try:
            if self.their_state is h11.IDLE:
                HeadScanner().scan(self.trailing_data[0])
            event = super().next_event()
            if isinstance(event, h11.Request):
                check_host(event.headers.raw_items(), event.http_version.decode("ascii"))
        except HeadRefused as refused:
            self.refusal = refused
            raise h11.RemoteProtocolError(refused.message, refused.status) from None
        except h11.RemoteProtocolError as exc:
            self.refusal = _h11_refusal(str(exc))
            raise
        return event


def _h11_refusal(text: str) -> HeadRefused | None:
    """Our answer where h11 checks first (the Host count), else uvicorn's plain 400."""
    if "multiple Host" in text:
        return several_hosts()
    if "Missing mandatory Host" in text:
        return missing_host()
    return None


class H11Protocol(_DeadlinesMixin, _H11Protocol):
    conn: _BoundedConnection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _BoundedConnection()

    def send_400_response(self, msg: str) -> None:
        self._refusal, self.conn.refusal = self.conn.refusal, None
        if not self._refused(msg):
            super().send_400_response(msg)

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
        """llhttp parses as eagerly as it is fed, and keeps a header line whole until it
        ends, so each head is fed through a :class:`HeadScanner` first, up to its end.

        A body is fed whole: when a pipelined head begins in the same read, the scanner takes
        over at the next read from what the callbacks reported (the URL and complete fields,
        which they check too); so that head may go over by at most the rest of that read.
        """

        _in_head = False
        _in_message = False
        _url_bytes = 0
        _field_bytes = 0
        _fields = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self._scanner = HeadScanner()
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            view, pos = memoryview(data), 0
            while pos < len(data) and self._parsing():
                in_body = self._in_message and not self._in_head
                end, found = len(data), None
                if not in_body:
                    try:
                        found = self._scanner.scan(data, pos)
                    except HeadRefused as refused:
                        self._refuse(refused)
                        return
                    if found is not None:
                        end = found
                        self._scanner.reset()
                super().data_received(view[pos:end])  # type: ignore[arg-type]  # llhttp reads it
                if found is not None and self._in_head and self._parsing():
                    self._refuse(HeadRefused(400, "The request head is not valid HTTP/1.1."))
                    return  # an end of head that llhttp did not see: never count afresh
                pos = end
                if in_body and self._in_head:  # a pipelined head began in the body's read
                    self._carry_head(data)

        def _carry_head(self, data: bytes) -> None:
            """Count on from what the callbacks reported of a head that began inside ``data``
            (its URL and complete fields); its last line's bytes are not known, only whether
            ``data`` ended inside a line."""
            self._scanner.reset(
                head_bytes=self._url_bytes + self._field_bytes,
                lines=1 + self._fields,
                tail=data[-2:],
            )

        def _parsing(self) -> bool:
            """Still this protocol's to parse: not refused, closing, or upgraded."""
            transport = self.transport
            return not (
                self._discarding or transport.is_closing() or transport.get_protocol() is not self
            )

        def send_400_response(self, msg: str) -> None:
            if not self._refused(msg):
                super().send_400_response(msg)

        def _head_pending(self) -> bool:
            return self._in_head

        def _body_pending(self) -> bool:
            return self._in_message

        def _reject(self, refused: HeadRefused) -> None:
            """From a parser callback: the parser stops, and uvicorn calls send_400_response."""
            self._refusal = refused
            raise refused

        def on_message_begin(self) -> None:
            self._in_head = self._in_message = True
            self._url_bytes = self._field_bytes = self._fields = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._url_bytes += len(url)
            if self._url_bytes > MAX_LINE_BYTES:
                self._reject(line_too_long(request_line=True))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._fields += 1
            size = len(name) + len(value) + 4
            self._field_bytes += size
            if self._fields > MAX_FIELDS:
                self._reject(too_many_fields())
            if size > MAX_LINE_BYTES:
                self._reject(line_too_long(request_line=False))
            if self._url_bytes + self._field_bytes > MAX_HEAD_BYTES:
                self._reject(head_too_large())
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            try:
                check_host(self.headers, self.parser.get_http_version())
            except HeadRefused as refused:
                self._reject(refused)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_message = False
            super().on_message_complete()

        def on_response_complete(self) -> None:
            pending = self._body_pending()
            super().on_response_complete()
            self._responded(pending)
