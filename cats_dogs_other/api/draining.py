"""``SHUTDOWN_DRAIN_S``: on SIGTERM, answer ``/ready`` with 503 for that long while still serving,
then hand the signal to uvicorn for its graceful stop.

A load balancer that checks ``/ready`` (HAProxy every second; one failure marks a replica
down) stops sending new requests during the drain, so a rolling restart loses none. Kubernetes
needs 0: its preStop hook already waits while the endpoint is removed.

uvicorn installs its own SIGTERM handler before the lifespan starts; :meth:`Drain.install`
(called by the lifespan, in the process's main thread) wraps it and restores it on shutdown.
A second SIGTERM during the drain, or SIGINT (Ctrl-C), stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    """Whether this process is draining; owns the SIGTERM wrapper while the app runs."""

    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.draining = False
        self._previous: Handler | None = None
        self._handler: Handler | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Wrap the current SIGTERM handler; False when there is nothing to do or it cannot be
        done here (no drain configured, not the main thread, no Python handler installed)."""
        if self.drain_s <= 0 or threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return False

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.draining:  # a second SIGTERM: stop now
                previous(signum, frame)
                return
            self.begin()
            loop.call_soon_threadsafe(loop.call_later, self.drain_s, previous, signum, None)

        self._previous, self._handler = previous, on_sigterm
        signal.signal(signal.SIGTERM, on_sigterm)
        return True

    def begin(self) -> None:
        """Start failing readiness (what SIGTERM does)."""
        if not self.draining:
            self.draining = True
            logger.info(
                "SIGTERM: draining for %s s (/ready answers 503), then stopping",
                self.drain_s,
                extra={"event": "draining"},
            )

    def uninstall(self) -> None:
        if self._handler is not None and signal.getsignal(signal.SIGTERM) is self._handler:
            signal.signal(signal.SIGTERM, self._previous)
        self._handler = None
