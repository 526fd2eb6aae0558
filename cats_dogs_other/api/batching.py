"""Micro-batching: coalesce concurrent requests into one forward pass on one inference thread.

Why: a MobileNetV2-size model costs far less per image in a batch of 8 than one at a time on
these CPUs, so calling it once per request wastes most of the machine and, on the event loop,
stalls every other request. Here each request submits the decoding of its image (an awaitable
that yields the preprocessed array); a single dedicated thread takes up to ``max_batch_size``
images, runs ``infer(np.stack(batch))`` once and hands every caller its row through
``loop.call_soon_threadsafe``. TensorFlow releases the GIL while it computes, so the event loop
and the decode pool keep running meanwhile.

How long a batch waits for company: at most ``max_wait_ms`` after its first item was queued,
and only while an admitted request is still decoding. Since the batcher is handed the decoding
itself, it knows which requests are on their way: a lone request runs at once, and the requests
of one wave of clients share a batch instead of being split across two half-empty ones.

Lanes (``lanes``, ``INFERENCE_LANES``; one unless set, :mod:`kto.inference.cpus` says why):
several inference threads, each taking its own batch from the one queue and running it with the
runtime's intra-op share divided between them (one session serves concurrent runs). One lane at
a time fills a batch while the others run theirs. A lane sizes its batch by the lanes free to
run one, re-read for every item: with every lane idle, a wave of 8 requests runs as two batches
of 4 at once (as one batch of 8 on two intra-op threads would); with the others busy, it takes a
full batch. A lane slowed by a neighbour on its core does not hold up the others, as one batch
split across threads would.

Back-pressure: admission is bounded (queued + still decoding <= ``queue_size`` images); beyond
that ``submit`` raises ``QueueFullError`` at once -- before any decoding is spent -- and the API
answers 503 + Retry-After instead of letting clients pile up and time out. ``submit_many``
admits a multi-image request as a whole or refuses it as a whole, so two concurrent batches
can never fill the queue part by part and both fail half-decoded. Every admitted image has a
deadline (``timeout_s``) that starts at admission and covers decoding, queueing and inference:
past it the caller gets ``InferenceTimeoutError``, a decode that has not started is dropped
and the worker skips the item if it has not run it yet.

A failing batch is retried item by item, so one bad input only fails its own request.

Defaults, chosen with ``python -m bench.tune`` and checked with ``python -m bench`` on the
2-core reference machine with the bundled 224x224 MobileNetV2 (bench/results/TUNING.md,
RESULTS.md): batches of 8 -- the in-process ceiling is flat from 8 to 32 images, and in the
server 16 gave 74 req/s against 86 for 8 at 8 connections, with a longer tail; a 50 ms cap on
waiting for requests still decoding (20 ms split a wave of 8 clients into two batches of 4); 64
admitted images -- 128: two full ``/upload/batch`` requests (2 x 32 images) plus 64 single
uploads, about 1.5 s of work at 88 images/s, so a full queue still answers well inside any
client timeout.

Several processes (``WORKERS``, uvicorn ``--workers``): each has its own model, batcher and
thread pools, so each gets its share of the cores (settings.py does this unless the thread
settings are given). On 2 cores, 2 workers with 1 thread each served 99.5 req/s at 8
connections against 87.7 for one worker (one process leaves ~0.3 core idle between
TensorFlow's parallel sections), at twice the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cats_dogs_other.api.metrics import Metrics

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_MAX_WAIT_MS = 50.0
DEFAULT_QUEUE_SIZE = 128
DEFAULT_TIMEOUT_S = 10.0


class QueueFullError(Exception):
    """The inference queue is full: the caller should retry later (HTTP 503 + Retry-After)."""


class BatcherClosedError(QueueFullError):
    """The batcher is stopping or not started; same answer as a full queue (503)."""


class InferenceTimeoutError(Exception):
    """The request waited longer than its deadline for a result (HTTP 503 + Retry-After)."""


@dataclass(slots=True, eq=False)
class _Item:
    x: np.ndarray
    future: asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop
    enqueued: float
    abandoned: bool = field(default=False)  # set on the loop thread, read by the worker


class _Arrival:
    """One admitted image still being decoded; ``end`` releases its slot exactly once."""

    __slots__ = ("_batcher", "_open")

    def __init__(self, batcher: MicroBatcher) -> None:
        self._batcher = batcher
        self._open = True
        batcher._arriving += 1

    def end(self) -> None:
        if self._open:
            self._open = False
            self._batcher._arrival_ended()


_STOP = object()  # stop after what is queued
_WAKE = object()  # re-check whether anything is still arriving


def _close(x: object) -> None:
    """Refusing a coroutine we will never await: close it to avoid a 'never awaited' warning."""
    if inspect.iscoroutine(x):
        x.close()


class MicroBatcher:
    """Coalesces concurrent ``submit`` calls into batches run by one inference thread."""

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        metrics: Metrics | None = None,
        lanes: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if max_wait_ms < 0 or timeout_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and timeout_s > 0")
        self._infer = infer
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self._metrics = metrics
        self.lanes = lanes
        # Admission (queued + arriving <= queue_size) is checked in submit; the spare slots
        # are for the stop (one per lane) and wake sentinels.
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size + 8 + lanes)
        # One lane at a time fills a batch, so lanes take whole batches in turn instead of
        # splitting one wave of requests into half-empty ones.
        self._collecting = threading.Lock()
        self._busy_lanes = 0  # lanes running a batch
        self._busy_lock = threading.Lock()
        self._arriving = 0  # admitted awaitables still decoding; written on the loop thread only
        self._wakes = 0  # wake sentinels in the queue: they hold no image, so never count them
        self._wakes_lock = threading.Lock()
        self._accepting = False
        self._closed = False  # the stop sentinel is (about to be) queued: nothing may follow it
        self._no_arrivals: asyncio.Event | None = None  # set by the last arrival while stopping
        self._threads: list[threading.Thread] = []

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the inference thread (not counting the batch in flight)."""
        return self._queued_images()

    @property
    def arriving(self) -> int:
        """Admitted requests still being decoded."""
        return self._arriving

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    async def start(self) -> None:
        if self._threads:
            raise RuntimeError("MicroBatcher already started")
        self._threads = [
            threading.Thread(target=self._run, name=self._lane_name(lane), daemon=True)
            for lane in range(self.lanes)
        ]
        for thread in self._threads:
            thread.start()
        self._accepting = True
        if self._metrics is not None:
            self._metrics.queue_depth.set_function(lambda: self.queue_depth)

    def _lane_name(self, lane: int) -> str:
        return "inference" if self.lanes == 1 else f"inference-{lane}"

    async def stop(self) -> None:
        """Stop accepting, let admitted requests (queued or still decoding) finish, join."""
        self._accepting = False
        if not self.running:
            self._closed = True
            return
        if self._arriving:
            self._no_arrivals = asyncio.Event()
            with contextlib.suppress(TimeoutError):  # bounded: decodes end or fail
                await asyncio.wait_for(self._no_arrivals.wait(), self.timeout_s)
        self._closed = True
        # One stop per lane, after everything queued. Blocking puts in a thread: the lanes are
        # draining, a slot frees up quickly.
        for _ in self._threads:
            await asyncio.to_thread(self._queue.put, _STOP)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    async def submit(self, x: Awaitable[np.ndarray]) -> np.ndarray:
        """Admit ``x`` (the decoding of one upload), queue the image it yields; its row.

        The request is admitted -- or refused with ``QueueFullError`` -- *before* any decoding
        is spent on it, and while it decodes the worker knows it is on its way, so a batch
        waits for it (up to ``max_wait_ms``) instead of leaving without it.
        """
        self._admit([x])
        return await self._arrive(x, self._deadline(), _Arrival(self))

    async def submit_many(self, xs: Sequence[Awaitable[np.ndarray]]) -> list[np.ndarray]:
        """Admit all of ``xs`` (decodings) or none; their rows in order.

        A failure cancels the rest (decodes not started yet never run) and the error of the
        lowest index is raised, so a caller can name the offending part.
        """
        self._admit(xs)
        deadline = self._deadline()
        arrivals = [_Arrival(self) for _ in xs]
        tasks = [
            asyncio.ensure_future(self._arrive(x, deadline, arrival))
            for x, arrival in zip(xs, arrivals, strict=True)
        ]
        try:
            return await all_or_first_error(tasks)
        finally:
            for arrival in arrivals:  # tasks cancelled before they started
                arrival.end()

    def _admit(self, xs: Sequence[object]) -> None:
        """Room for every one of ``xs`` now, or an exception (and nothing decoded)."""
        if not self._accepting:
            for x in xs:
                _close(x)
            raise BatcherClosedError("The inference worker is not running; retry shortly.")
        if self._queued_images() + self._arriving + len(xs) > self.queue_size:
            for x in xs:
                _close(x)
            self._reject("queue_full")
            raise QueueFullError("The server is at capacity; retry shortly.")

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.timeout_s

    async def _arrive(
        self, x: Awaitable[np.ndarray], deadline: float, arrival: _Arrival
    ) -> np.ndarray:
        """Await one admitted decoding (within the deadline), then queue its image."""
        try:
            async with asyncio.timeout_at(deadline):
                array = await x
        except TimeoutError:
            arrival.end()
            self._wake()
            self._reject("timeout")
            raise self._timeout_error() from None
        except BaseException:
            arrival.end()
            self._wake()
            raise
        return await self._enqueue(array, arrival, deadline)

    def _timeout_error(self) -> InferenceTimeoutError:
        return InferenceTimeoutError(
            f"No inference result within {self.timeout_s:g} s; the server is overloaded."
        )

    async def _enqueue(self, x: np.ndarray, arrival: _Arrival, deadline: float) -> np.ndarray:
        loop = asyncio.get_running_loop()
        item = _Item(x, loop.create_future(), loop, time.monotonic())
        try:
            if self._closed:
                raise BatcherClosedError("The inference worker has stopped; retry shortly.")
            self._queue.put_nowait(item)
        except queue.Full:
            self._reject("queue_full")
            raise QueueFullError("The server is at capacity; retry shortly.") from None
        finally:
            arrival.end()  # after the put: the worker sees it queued or arriving
        timer = loop.call_at(deadline, self._expire, item)
        try:
            return await item.future
        finally:
            timer.cancel()
            if not item.future.done() or item.future.cancelled():
                item.abandoned = True  # the caller went away: let the worker skip it

    def _arrival_ended(self) -> None:
        self._arriving -= 1
        if not self._arriving and self._no_arrivals is not None:
            self._no_arrivals.set()

    def _wake(self) -> None:
        """An arrival gave up: wake a worker that may be waiting for it."""
        with self._wakes_lock:
            self._wakes += 1
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:
            self._woken()

    def _woken(self) -> None:
        with self._wakes_lock:
            self._wakes -= 1

    def _queued_images(self) -> int:
        return max(0, self._queue.qsize() - self._wakes)

    # -- event-loop side helpers ----------------------------------------------------------

    def _expire(self, item: _Item) -> None:
        item.abandoned = True
        if not item.future.done():
            self._reject("timeout")
            item.future.set_exception(self._timeout_error())

    def _reject(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.rejections_total.labels(reason=reason).inc()

    @staticmethod
    def _resolve(outcomes: list[tuple[asyncio.Future[np.ndarray], Any, bool]]) -> None:
        for future, value, failed in outcomes:
            if future.done():  # timed out or cancelled meanwhile: drop the result
                continue
            if failed:
                future.set_exception(value)
            else:
                future.set_result(value)

    # -- inference thread -----------------------------------------------------------------

    def _run(self) -> None:
        """One lane: take a whole batch (one lane at a time), run it, until a stop sentinel."""
        stopping = False
        while not stopping:
            with self._collecting:
                first = self._queue.get()
                if first is _STOP:
                    break
                if first is _WAKE:
                    self._woken()
                    continue
                batch, stopping = self._collect(first)
                with self._busy_lock:  # before the next lane sizes its batch
                    self._busy_lanes += 1
            try:
                self._run_batch([item for item in batch if not item.abandoned])
            finally:
                with self._busy_lock:
                    self._busy_lanes -= 1

    def _lane_batch_size(self) -> int:
        """The batch is shared between the lanes free to run it: with two lanes idle, a wave of
        8 requests runs as two batches of 4 at once rather than 8 on one lane while the other
        waits; when the other lanes are busy, a lane takes a full batch."""
        free = max(1, self.lanes - self._busy_lanes)
        return -(-self.max_batch_size // free)

    def _run_batch(self, live: list[_Item]) -> None:
        if not live:
            return
        try:
            self._process(live)
        except Exception as exc:  # a bug here must not kill an inference lane
            logger.exception("inference worker failed on a batch of %d", len(live))
            self._deliver(live, [(item.future, exc, True) for item in live])

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        """Fill a batch until it is full or ``first.enqueued + max_wait`` has passed. "Full" is
        this lane's share (:meth:`_lane_batch_size`), re-read for every item: a lane that frees
        up meanwhile shrinks it, so a wave is not gathered onto one lane while another idles.

        Stop waiting early as soon as nothing is queued or arriving: there is no one left to
        wait for, so a lone request runs at once.
        """
        batch = [first]
        deadline = first.enqueued + self.max_wait_s
        while len(batch) < self._lane_batch_size():
            remaining = deadline - time.monotonic()
            nothing_coming = self._arriving == 0 and self._queue.empty()
            try:
                if remaining > 0 and not nothing_coming:
                    item = self._queue.get(timeout=remaining)
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            if item is _WAKE:
                self._woken()
            else:
                batch.append(item)
        return batch, False

    def _process(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            rows = self._infer_checked(np.stack([item.x for item in batch]), len(batch))
            outcomes = [(item.future, rows[i].copy(), False) for i, item in enumerate(batch)]
        except Exception as exc:
            if len(batch) == 1:
                outcomes = [(batch[0].future, exc, True)]
            else:
                logger.warning("batch of %d failed (%s); retrying one by one", len(batch), exc)
                outcomes = [self._one(item) for item in batch]
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(batch))
            self._metrics.inference_seconds.observe(time.perf_counter() - started)
        self._deliver(batch, outcomes)

    def _one(self, item: _Item) -> tuple[asyncio.Future[np.ndarray], Any, bool]:
        try:
            return item.future, self._infer_checked(item.x[np.newaxis], 1)[0].copy(), False
        except Exception as exc:
            return item.future, exc, True

    def _infer_checked(self, batch: np.ndarray, n: int) -> np.ndarray:
        rows = np.asarray(self._infer(batch))
        if rows.ndim != 2 or rows.shape[0] != n:
            raise RuntimeError(f"infer returned shape {rows.shape} for a batch of {n}")
        return rows

    @staticmethod
    def _deliver(
        batch: list[_Item], outcomes: list[tuple[asyncio.Future[np.ndarray], Any, bool]]
    ) -> None:
        """One thread-safe callback per event loop (usually one), results in submit order."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for item, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(item.loop, []).append(outcome)
        for loop, group in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(MicroBatcher._resolve, group)


async def all_or_first_error(tasks: Sequence[asyncio.Future[Any]]) -> list[Any]:
    """Like gather, but a failure cancels the rest and the lowest-index error is raised."""
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        failed = any(t.done() and not t.cancelled() and t.exception() for t in tasks)
        pending = [t for t in tasks if not t.done()]
        if failed or pending:
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
    return [task.result() for task in tasks]
