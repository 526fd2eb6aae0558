"""A bounded async load generator (httpx) that keeps every request's outcome.

``wrk`` reports totals; the checks need per-request facts (status, when it started, how it
failed), so load comes from ``httpx.AsyncClient`` with a fixed pool of workers, one connection
each. Every loop is bounded by a request count and a deadline.
"""

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from kto.inference.metadata import DEFAULT_CLASSES

T = TypeVar("T")


@dataclass
class Outcome:
    """What happened to one request, seen from the client."""

    kind: str  # "http" (got a response) or a transport failure: refused/closed/reset/timeout/error
    status: int | None = None
    started: float = 0.0  # time.monotonic()
    ended: float = 0.0
    detail: str = ""
    valid: bool = False  # a 200 whose body is a well-formed prediction
    tag: str = ""
    sent: float | None = None  # when the request head was fully written (None: never written)

    @property
    def latency_s(self) -> float:
        return self.ended - self.started

    @property
    def label(self) -> str:
        return str(self.status) if self.kind == "http" else self.kind


@dataclass
class InFlight:
    """Requests written to the server and not yet answered (updated by :func:`send`)."""

    count: int = 0


def transport_kind(exc: BaseException) -> str:
    """Name a transport failure: refused (never accepted) vs closed/reset (accepted, then lost)."""
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "closed"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return "reset"
    return "error"


def is_valid_prediction(body: bytes, classes: Sequence[str] = DEFAULT_CLASSES) -> bool:
    """A 200 body shaped like the wheel's result: a known class and probabilities summing to 1."""
    try:
        data = json.loads(body)
        values = [float(v) for v in data["values"]]
    except (ValueError, KeyError, TypeError):
        return False
    return (
        data.get("prediction") in classes
        and len(values) == len(classes)
        and all(0.0 <= v <= 1.0 for v in values)
        and math.isclose(sum(values), 1.0, abs_tol=1e-3)
    )


def client(concurrency: int, timeout_s: float = 60.0) -> httpx.AsyncClient:
    """One keep-alive connection per worker, loopback only, no proxies from the environment."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(limits=limits, timeout=timeout_s, trust_env=False)


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    tag: str = "",
    classes: Sequence[str] = DEFAULT_CLASSES,
    in_flight: "InFlight | None" = None,
    **kwargs: object,
) -> Outcome:
    """Send one request and classify the outcome; never raises for transport failures.

    httpx's trace hook tells when the request head was actually written: a request written
    after the server began shutting down was never accepted, whenever ``send`` was called.
    """
    started = time.monotonic()
    sent: list[float] = []

    async def trace(event: str, info: object) -> None:
        if event.endswith("send_request_headers.complete"):
            sent.append(time.monotonic())
            if in_flight is not None:
                in_flight.count += 1

    try:
        response = await http.request(method, url, extensions={"trace": trace}, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        if in_flight is not None and sent:
            in_flight.count -= 1
        return Outcome(
            transport_kind(exc),
            None,
            started,
            time.monotonic(),
            repr(exc),
            tag=tag,
            sent=sent[0] if sent else None,
        )
    ended = time.monotonic()
    if in_flight is not None and sent:
        in_flight.count -= 1
    valid = response.status_code == 200 and is_valid_prediction(response.content, classes)
    detail = "" if response.status_code == 200 else response.text[:300]
    if response.status_code == 503 and "retry-after" in response.headers:
        detail = f"Retry-After={response.headers['retry-after']} " + detail
    return Outcome(
        "http", response.status_code, started, ended, detail, valid, tag, sent[0] if sent else None
    )


def upload_kwargs(
    token: str, data: bytes, *, name: str = "image.jpg", ctype: str = "image/jpeg"
) -> dict[str, Any]:
    return {
        "headers": {"Authorization": f"Bearer {token}"},
        "files": {"file": (name, data, ctype)},
    }


async def run_workers(
    request: Callable[[int], Awaitable[Outcome]],
    *,
    total: int,
    concurrency: int,
    deadline_s: float,
    on_progress: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """Run ``request(i)`` for i in range(total) on ``concurrency`` workers, within a deadline.

    Each worker sends its next request only after the previous answer, so ``concurrency`` is
    the number of requests in flight: the same model as ``wrk -c``.
    """
    outcomes: list[Outcome] = []
    counter = iter(range(total))
    stop_at = time.monotonic() + deadline_s

    async def worker() -> None:
        for i in counter:
            if time.monotonic() > stop_at:
                return
            outcomes.append(await request(i))
            if on_progress is not None:
                on_progress(len(outcomes))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def histogram(outcomes: Sequence[Outcome]) -> dict[str, int]:
    return dict(sorted(Counter(o.label for o in outcomes).items()))


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Stream ``data`` as a body of unknown length (httpx sends it chunked, no Content-Length)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when available: the client must not be the bottleneck."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the API's requirements
        return asyncio.run(coro)
    return uvloop.run(coro)
