"""`make run-replicas`: redis-server, the issuer, 2 API replicas and HAProxy, one command.

The printed commands work through HAProxy, the requests reach both replicas, and Ctrl-C stops
every process (HAProxy, each replica after its drain, the issuer, Redis) with exit status 0.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.support import CLASSES, E2EModel, StackProcess
from tests.e2e.test_stack import run_printed_commands
from tests.support.services import require_services

pytestmark = pytest.mark.slow


def upload_count(base_url: str) -> float:
    """The replica's own count of answered /upload requests, from its /metrics."""
    text = httpx.get(base_url + "/metrics", timeout=5, trust_env=False).text
    pattern = r'^cats_dogs_other_http_requests_total\{[^}]*route="/upload"[^}]*\} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def test_make_run_replicas_balances_and_stops_cleanly(e2e_model: E2EModel) -> None:
    require_services()
    stack = StackProcess(e2e_model.path, "--replicas", "2")
    try:
        stack.wait_ready()
        (line,) = [line for line in stack.lines if "balances 2 replicas:" in line]
        replicas = re.findall(r"http://127\.0\.0\.1:\d+", line.split("balances", 1)[1])
        assert len(replicas) == 2, line
        assert f"HAProxy on http://127.0.0.1:{stack.api_port}" in line
        commands = stack.printed_commands()
        assert f"http://127.0.0.1:{stack.api_port}/upload" in commands[1]

        bodies = [run_printed_commands(commands) for _ in range(4)]

        assert all(body["prediction"] in CLASSES for body in bodies)
        assert all(upload_count(url) >= 1 for url in replicas), "round-robin missed a replica"
        code = stack.interrupt()
    finally:
        stack.stop()

    assert code == 0, stack.output
    assert "SIGINT received: stopping the stack" in stack.output
    for name in ("haproxy", "redis"):
        assert re.search(rf"^stopped the {name} \(exit status 0\)$", stack.output, re.M), name
    for name in ("replica-1", "replica-2", "issuer"):
        assert stack.stopped_cleanly(name), stack.output
    stack.assert_down()
