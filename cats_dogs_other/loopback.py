"""Child processes on loopback: a free port, start, wait until it answers, its log tail, stop.

``make run`` (:mod:`cats_dogs_other.stack`) supervises the development issuer and the API
with :class:`Child`; the benchmark, the reliability checks and the tests start their servers
the same way, so waiting, failure reports and stopping are written once. The image does not
ship this module: the API itself never starts a process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from pathlib import Path
from signal import SIGKILL, SIGTERM
from typing import IO, Self

import httpx

from cats_dogs_other.core.hosts import LOOPBACK
from cats_dogs_other.core.paths import REPO_ROOT

__all__ = ["LOOPBACK", "ROOT", "Child", "ChildError", "ChildTimeoutError", "free_port"]

ROOT = REPO_ROOT
TAIL_LINES = 30
_TAIL_BYTES = 64 * 1024  # enough for TAIL_LINES of JSON log records


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS just handed out (another process could take it first: a tiny race)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ChildError(RuntimeError):
    """A child exited or was not ready in time; the message ends with its last output lines.

    ``summary`` is the first part alone (which child, what happened), for a supervisor that
    already showed the child's output as it came.
    """

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(f"{summary}; {detail}" if detail else summary)
        self.summary = summary


class ChildTimeoutError(ChildError):
    """The child still ran but was not ready within the time it was given."""


class Child:
    """One command in a process group of its own, its output in a log file or forwarded by line.

    A process group of its own: Ctrl-C in a terminal reaches only the parent, which stops its
    children in order, and a kill can end everything the child started (uvicorn's worker
    processes). It stays in the parent's session: with the scheduler's autogroups (Debian's
    default) every session is scheduled as one group, so children in sessions of their own would
    each get an equal share of the CPUs whatever their thread counts, unlike processes sharing
    one container's cgroup (what ``python -m bench``'s contended case stands for).
    With ``log_path`` the child writes straight to the file, so a busy parent never slows a
    server down by reading its output late; otherwise a thread reads it, keeps the last lines
    and hands each to ``echo``. ``stderr_path`` keeps stderr apart from stdout.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path = ROOT,
        log_path: Path | None = None,
        stderr_path: Path | None = None,
        echo: Callable[[str], None] | None = None,
        tail_lines: int = TAIL_LINES,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.stderr_path = stderr_path
        self.tail_lines = tail_lines
        self._echo = echo
        self._lines: deque[str] = deque(maxlen=tail_lines)
        self._reader: threading.Thread | None = None
        self._popen: subprocess.Popen[str] | None = None
        self.killed = False  # stop() had to SIGKILL: the grace period ran out

    def start(self) -> Self:
        with _open_log(self.log_path) as stdout, _open_log(self.stderr_path) as stderr:
            self._popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.PIPE,
                stderr=stderr if stderr is not None else subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                process_group=0,
            )
        if self._popen.stdout is not None:
            self._reader = threading.Thread(
                target=self._read, args=(self._popen.stdout,), name=f"{self.name}-log", daemon=True
            )
            self._reader.start()
        return self

    def _read(self, stream: IO[str]) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            self._lines.append(line)
            if self._echo is not None:
                self._echo(line)

    @property
    def popen(self) -> subprocess.Popen[str]:
        assert self._popen is not None, f"the {self.name} was never started"
        return self._popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; negative for the signal that ended it."""
        return self.popen.poll()

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout_s: float) -> int | None:
        """The exit status, or None if it still runs after ``timeout_s``."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 15.0, signum: int = SIGTERM) -> int | None:
        """``signum`` (SIGTERM: a graceful shutdown), then SIGKILL to the whole session once
        ``grace_s`` has passed; returns the exit status (None if it was never started)."""
        if self._popen is None:
            return None
        if self.alive():
            self.signal(signum)
            if self.wait(grace_s) is None:
                self.killed = True
                self._kill_session()
                self.wait(5)
        self._kill_session()  # whatever the child left behind in its session
        if self._reader is not None:
            self._reader.join(timeout=5)  # the last lines it wrote
        return self.returncode

    def _kill_session(self) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, SIGKILL)

    def tail(self) -> str:
        """The last ``tail_lines`` lines of output, indented for an error message."""
        if self.log_path is not None:
            lines = _last_lines(self.log_path, self.tail_lines)
        else:
            if self._reader is not None and not self.alive():
                self._reader.join(timeout=1)  # the lines written just before it exited
            lines = list(self._lines)
        return "\n".join(f"    {line}" for line in lines) or "    (no output)"

    def output(self) -> str:
        """Everything the child wrote to ``log_path``."""
        assert self.log_path is not None, f"the {self.name}'s output goes to no file"
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def error(self, problem: str, kind: type[ChildError] = ChildError) -> ChildError:
        where = f"the end of {self.log_path}" if self.log_path else "its last lines"
        return kind(f"the {self.name} {problem}", f"{where}:\n{self.tail()}")

    def check_alive(self) -> None:
        """ChildError (with the log tail) if the child has exited."""
        if (code := self.returncode) is not None:
            raise self.error(f"exited unexpectedly with status {code}")

    def wait_until(
        self,
        ready: Callable[[], bool],
        what: str,
        *,
        timeout_s: float,
        interval_s: float = 0.25,
        stop: threading.Event | None = None,
        last: Callable[[], str] | None = None,
    ) -> bool:
        """True once ``ready()`` is; False if ``stop`` is set first; ChildError if the child
        exits or ``timeout_s`` passes (``what`` and ``last()`` say what was awaited and seen)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                return False
            if (code := self.returncode) is not None:
                raise self.error(f"exited with status {code} before {what}")
            if ready():
                return True
            if stop is not None:
                stop.wait(interval_s)
            else:
                time.sleep(interval_s)
        seen = f"; last: {last()}" if last is not None else ""
        problem = f"was not ready within {timeout_s:g} s (waiting until {what}{seen})"
        raise self.error(problem, ChildTimeoutError)

    def wait_http(
        self,
        url: str,
        *,
        status: int = 200,
        timeout_s: float,
        interval_s: float = 0.25,
        stop: threading.Event | None = None,
    ) -> bool:
        """:meth:`wait_until` ``GET url`` answers ``status`` (proxies ignored: it is loopback)."""
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:

            def answered() -> bool:
                nonlocal last
                try:
                    response = client.get(url)
                except httpx.HTTPError as error:
                    last = f"{type(error).__name__}: {error}"
                    return False
                last = f"HTTP {response.status_code} {response.text[:300]}"
                return response.status_code == status

            return self.wait_until(
                answered,
                f"{url} answered {status}",
                timeout_s=timeout_s,
                interval_s=interval_s,
                stop=stop,
                last=lambda: last,
            )


def _open_log(path: Path | None) -> AbstractContextManager[IO[bytes] | None]:
    if path is None:
        return nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def _last_lines(path: Path, count: int) -> list[str]:
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _TAIL_BYTES))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ["(no log file)"]
    return text.splitlines()[-count:]
