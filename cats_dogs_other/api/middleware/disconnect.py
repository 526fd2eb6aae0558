"""Stop work for a client that has gone away.

uvicorn does not cancel a request's handler when its client disconnects; without this, every
upload queued behind a slow decode would still be decoded for nobody. Once the body has been
read, the only message the ASGI server can still deliver is ``http.disconnect``, so a watcher
waits for it and cancels the work: decodes still queued in the thread pool never start, images
queued for inference are skipped by the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Receive

T = TypeVar("T")


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """``await work``, unless the client leaves first: then cancel it, raise ClientDisconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if not task.cancelled() and task.done():
        return task.result()
    raise ClientDisconnect()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
