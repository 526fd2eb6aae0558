"""A fault-injecting HTTP proxy on loopback, put between the API and the issuer's keys endpoint.

It runs its own event loop in a thread so the check can switch modes while its load generator
runs, and it counts every request that reaches it: "50 concurrent requests cause 1 fetch" is
measured here, on the wire, not inferred from the API's logs.

With ``ssl_context`` it listens with TLS, for validators that fetch keys over https only.

Modes:
    pass     forward to the upstream unchanged
    refuse   nothing listens on the port: connections are refused
    error    503 Service Unavailable
    reset    accept, read the request, close without answering
    slow     wait ``delay_s`` seconds, then forward
    drip     forward the headers at once, then the body 64 bytes every ``delay_s`` seconds
             (defeats a per-read timeout; only a total deadline bounds it)
    empty    200 with ``{"keys": []}``
    garbage  200 with a body that is not JSON
"""

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

MODES = ("pass", "refuse", "error", "reset", "slow", "drip", "empty", "garbage")
DRIP_BYTES = 64
_REASONS = {200: "OK", 404: "Not Found", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Hit:
    """One request that reached the proxy."""

    at: float  # time.monotonic()
    mode: str
    path: str


class FaultProxy:
    """Forward ``GET`` requests to ``upstream`` (e.g. ``http://127.0.0.1:PORT``) with faults."""

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port
        self.ssl_context = ssl_context  # set: the proxy listens with TLS (https)
        self.mode = "pass"
        self.delay_s = 0.0
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()  # ends injected delays early when the proxy stops
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- control (called from the check's thread) -------------------------------------------

    def start(self) -> "FaultProxy":
        self._thread.start()
        self._call(self._open())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: str, *, delay_s: float = 0.0) -> None:
        """Switch fault mode; ``refuse`` closes the listening socket, others reopen it."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self._call(self._switch(mode, delay_s))

    def url(self, path: str = "/.well-known/jwks.json") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def count(self, since: float = 0.0, path: str | None = None) -> int:
        """Requests received at or after ``since`` (monotonic), optionally for one path."""
        with self._lock:
            return sum(1 for h in self.hits if h.at >= since and (path is None or h.path == path))

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # -- the server (runs in the proxy's loop) ----------------------------------------------

    async def _open(self) -> None:
        self._client = self._client or httpx.AsyncClient(timeout=30, trust_env=False)
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _switch(self, mode: str, delay_s: float) -> None:
        if mode == "refuse":
            await self._close_listener()
        elif self._server is None:
            await self._open()
        self.mode, self.delay_s = mode, delay_s

    async def _shutdown(self) -> None:
        await self._close_listener()
        self._closing.set()  # a 'slow' or 'drip' answer still pending gives up
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        if self._client is not None:
            await self._client.aclose()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            mode, delay = self.mode, self.delay_s
            with self._lock:
                self.hits.append(Hit(time.monotonic(), mode, path))
            status, ctype, body = await self._respond(mode, delay, path)
            if status is not None:
                reason = _REASONS.get(status, "Status")
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                )
                await writer.drain()
                step = DRIP_BYTES if mode == "drip" else max(1, len(body))
                for i in range(0, len(body), step):
                    if i and not await self._pause(delay):
                        break
                    writer.write(body[i : i + step])
                    await writer.drain()
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            IndexError,
        ):
            pass  # the API gave up (its fetch timeout) or sent nonsense: nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _pause(self, delay_s: float) -> bool:
        """Sleep ``delay_s``; False if the proxy is stopping meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=delay_s)
        return not self._closing.is_set()

    async def _respond(self, mode: str, delay_s: float, path: str) -> tuple[int | None, str, bytes]:
        if mode == "reset":
            return None, "", b""
        if mode == "error":
            return 503, "text/plain", b"keys endpoint unavailable (injected fault)"
        if mode == "empty":
            return 200, "application/json", b'{"keys": []}'
        if mode == "garbage":
            return 200, "application/json", b"<html>\x00\xff not json at all {{{"
        if mode == "slow" and not await self._pause(delay_s):
            return None, "", b""
        assert self._client is not None
        try:
            upstream = await self._client.get(self.upstream + path)
        except httpx.HTTPError:
            return 502, "text/plain", b"upstream unreachable"
        ctype = upstream.headers.get("content-type", "application/octet-stream")
        return upstream.status_code, ctype, upstream.content
