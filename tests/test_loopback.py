"""The loopback harness every server start goes through: ready, failing, stopping, its output."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cats_dogs_other.loopback import LOOPBACK, Child, ChildError, free_port


def python(
    code: str,
    tmp_path: Path,
    *,
    log_path: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> Child:
    argv = [sys.executable, "-c", code]
    return Child("probe", argv, env={}, cwd=tmp_path, log_path=log_path, echo=echo)


def test_free_port_can_be_bound_on_loopback() -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, free_port()))


def test_a_server_is_ready_once_it_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    server = Child(
        "http.server",
        [sys.executable, "-m", "http.server", str(port), "--bind", LOOPBACK],
        env={},
        cwd=tmp_path,
        log_path=tmp_path / "server.log",
    ).start()
    try:
        assert server.wait_http(f"http://{LOOPBACK}:{port}/", timeout_s=30, interval_s=0.05)
        assert server.alive()
    finally:
        code = server.stop(grace_s=10)
    assert code == -signal.SIGTERM and not server.killed
    assert "GET / HTTP/1.1" in server.output()


def test_a_child_that_exits_first_fails_with_its_last_lines(tmp_path: Path) -> None:
    child = python("print('cannot start: PORT is taken'); raise SystemExit(3)", tmp_path).start()
    with pytest.raises(ChildError, match="exited with status 3 before") as failure:
        child.wait_http(f"http://{LOOPBACK}:{free_port()}/", timeout_s=30, interval_s=0.05)
    assert "    cannot start: PORT is taken" in str(failure.value)
    child.stop()


def test_a_child_that_never_answers_times_out_with_the_last_answer(tmp_path: Path) -> None:
    child = python("import time; time.sleep(60)", tmp_path, log_path=tmp_path / "log").start()
    try:
        with pytest.raises(ChildError, match=r"was not ready within 0.3 s .*ConnectError"):
            child.wait_http(f"http://{LOOPBACK}:{free_port()}/", timeout_s=0.3, interval_s=0.05)
    finally:
        child.stop(grace_s=5)


def test_waiting_ends_quietly_when_asked_to_stop(tmp_path: Path) -> None:
    child = python("import time; time.sleep(60)", tmp_path).start()
    stop = threading.Event()
    stop.set()
    try:
        assert child.wait_until(lambda: False, "never", timeout_s=30, stop=stop) is False
    finally:
        child.stop(grace_s=5)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    lines: list[str] = []
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring SIGTERM', flush=True); time.sleep(60)"
    )
    child = python(code, tmp_path, echo=lines.append).start()
    child.wait_until(lambda: "ignoring SIGTERM" in lines, "it printed", timeout_s=30)
    assert child.stop(grace_s=0.5) == -signal.SIGKILL
    assert child.killed
    assert child.tail() == "    ignoring SIGTERM"


def test_a_child_has_its_own_process_group_in_the_parents_session(tmp_path: Path) -> None:
    """Its own group, so a kill ends its whole tree and Ctrl-C reaches only the parent; the
    parent's session, so autogroup scheduling treats it and its siblings as one group."""
    child = python("import time; time.sleep(60)", tmp_path).start()
    try:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        assert os.getsid(child.pid) == os.getsid(0)
    finally:
        child.stop(grace_s=10)
