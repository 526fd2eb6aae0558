"""Start the API: ``python boot.py`` (uvicorn on HOST:PORT, WORKERS processes).

Settings are read and checked here first, so a misconfigured server stops at once with a
one-line reason instead of a traceback from every worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import uvicorn

from cats_dogs_other.api.access_log import logging_config
from cats_dogs_other.api.settings import ConfigError, load_settings


def _return_freed_memory() -> None:
    """Buffers of 1 MiB+ (decoded images) go to mmap, so freeing them returns memory (glibc)."""
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))  # for spawned workers
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # -3 = M_MMAP_THRESHOLD


def main() -> int:
    _return_freed_memory()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"cats-dogs-other API not started: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        "cats_dogs_other.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_config(settings.log_level),
        access_log=False,  # our middleware writes one JSON line per request instead
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
