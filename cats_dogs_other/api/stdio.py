"""Keeps stdout a pure JSON-lines log and stderr for the one start-up sentence.

Log collectors parse stdout line by line, but not everything in the process writes JSON:
TensorFlow's C++ runtime writes plain lines to file descriptor 2, and any library may print.
:func:`capture` points descriptors 1 and 2 at pipes (inherited by uvicorn's worker processes
too); a thread per pipe passes JSON lines through to the real stdout unchanged and wraps every
other line in a JSON record (``logger`` is ``stdout`` or ``stderr``). The real stderr is kept
for the caller's one human sentence.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_LEVELS = {"stdout": "INFO", "stderr": "WARNING"}


def _timestamp() -> str:
    """The same shape as the JSON formatter's ``time`` (logging's asctime)."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"


def as_json_line(line: str, source: str) -> str:
    """``line`` itself if it is a JSON object, else a JSON record holding it."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            if isinstance(json.loads(stripped), dict):
                return stripped
        except ValueError:
            pass
    record = {"time": _timestamp(), "level": _LEVELS[source], "logger": source, "message": line}
    return json.dumps(record, ensure_ascii=False)


def _pump(read_fd: int, source: str, sink: TextIO, lock: threading.Lock) -> None:
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.strip():
                continue
            with lock:
                sink.write(as_json_line(line, source) + "\n")
                sink.flush()


@contextmanager
def capture() -> Iterator[TextIO]:
    """Within the block, descriptors 1 and 2 feed the JSON pumps; yields the real stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    real_out = os.fdopen(os.dup(saved[1]), "w", encoding="utf-8", errors="replace")
    real_err = os.fdopen(os.dup(saved[2]), "w", encoding="utf-8", errors="replace")
    lock = threading.Lock()
    pumps = []
    for fd, source in ((1, "stdout"), (2, "stderr")):
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, fd)
        os.close(write_fd)
        pump = threading.Thread(
            target=_pump, args=(read_fd, source, real_out, lock), name=f"{source}-json", daemon=True
        )
        pump.start()
        pumps.append(pump)
    try:
        yield real_err
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)  # closes the pipes' last write ends: the pumps see EOF
            os.close(copy)
        for pump in pumps:
            pump.join(timeout=5)
        real_out.close()
        real_err.close()
