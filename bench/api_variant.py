"""The API with a scheduling experiment, for measuring it before it could land.

(``API_VARIANT=awaitable`` in ``results/TUNING.md`` is the API as it runs: the route hands the
batcher the decoding step, ``cats_dogs_other/api/classify.py``.)

* ``API_WORKER_NICE=N``: after start-up, every thread but the event loop's (TensorFlow's
  pools, the inference thread, the decode pool) runs at nice +N, so the loop -- and with it
  ``/health`` -- is scheduled first when the cores are saturated.

Started by the harness through uvicorn's CLI when this pseudo-variable is set.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cats_dogs_other.api.app import create_app as _create_app


def create_app() -> Any:
    app = _create_app()
    nice = int(os.environ.get("API_WORKER_NICE", "0"))
    if nice:
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app_: Any) -> AsyncIterator[Any]:
            async with inner(app_) as state:
                pool = state["resources"].decode_pool  # type: ignore[index]
                # start every decode thread now, so that renicing below covers them
                await asyncio.gather(
                    *(
                        asyncio.get_running_loop().run_in_executor(pool, time.sleep, 0.05)
                        for _ in range(pool._max_workers)
                    )
                )
                renice_all_but_current(nice)
                yield state

        app.router.lifespan_context = lifespan
    return app


def renice_all_but_current(nice: int) -> None:
    me = threading.get_native_id()
    for tid in Path("/proc/self/task").iterdir():
        if int(tid.name) != me:
            os.setpriority(os.PRIO_PROCESS, int(tid.name), nice)
