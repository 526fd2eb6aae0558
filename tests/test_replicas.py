"""The replica stack's parts on their own: HAProxy accepts the generated configuration and it
says what the issue decided; redis-server started as the stack starts it refuses to evict."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cats_dogs_other.loopback import Child, ChildTimeoutError, free_port
from cats_dogs_other.replicas import (
    CHECK_INTERVAL_MS,
    SERVICE_ENV,
    Backend,
    Cluster,
    ServiceMissingError,
    haproxy_config,
    redis_argv,
    redis_command,
    redis_ping,
    require,
)
from cats_dogs_other.stack import StackSettings, failure
from tests.support.services import skip_unless_ci


def installed(binary: str) -> str:
    try:
        return require(binary)
    except ServiceMissingError as error:
        skip_unless_ci(str(error))


def config(tmp_path: Path) -> str:
    backends = [Backend("replica-1", 18081), Backend("replica-2", 18082)]
    return haproxy_config(
        bind_host="127.0.0.1", port=18080, backends=backends, admin_socket=tmp_path / "a.sock"
    )


def test_haproxy_accepts_the_generated_configuration(tmp_path: Path) -> None:
    haproxy = installed("haproxy")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config(tmp_path))

    result = subprocess.run(
        [haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_configuration_says_what_was_decided(tmp_path: Path) -> None:
    text = config(tmp_path)
    lines = {line.strip() for line in text.splitlines()}

    assert "balance roundrobin" in lines
    assert "http-check send meth GET uri /ready" in lines
    interval = f"{CHECK_INTERVAL_MS}ms"
    assert (
        f"default-server inter {interval} fastinter {interval} downinter {interval} fall 1 rise 1"
        in lines
    )
    # Connection failures: every method, on another replica. Answer-based: GET and HEAD only.
    assert "option redispatch 1" in lines
    assert any(line.startswith("retry-on conn-failure ") for line in lines)
    assert "http-request disable-l7-retry unless METH_GET || { method HEAD }" in lines
    assert "server replica-1 127.0.0.1:18081 check" in lines
    assert "server replica-2 127.0.0.1:18082 check" in lines
    assert "bind 127.0.0.1:18080" in lines


def test_redis_as_the_stack_starts_it_never_evicts(tmp_path: Path) -> None:
    binary = installed("redis-server")
    port = free_port()
    redis = Child("redis", redis_argv(binary, port, tmp_path), env=SERVICE_ENV).start()
    try:
        redis.wait_until(lambda: redis_ping(port), "it answered PING", timeout_s=20)
        policy = redis_command(port, "CONFIG", "GET", "maxmemory-policy")
        saving = redis_command(port, "CONFIG", "GET", "save")
    finally:
        redis.stop(10)

    assert b"noeviction" in policy
    assert saving.endswith(b"$0\r\n\r\n")  # save "": nothing written to disk


def test_a_cluster_part_not_ready_in_time_is_bounded_by_the_stacks_ready_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run-replicas`: STACK_READY_TIMEOUT_S bounds redis-server's start too, and the
    failure's one line names it (a real redis-server cannot answer PING within 1 ms)."""
    installed("redis-server")
    monkeypatch.setenv("STACK_READY_TIMEOUT_S", "0.001")
    stack = StackSettings()
    cluster = Cluster(
        replicas=2,
        api_env={},
        workdir=tmp_path,
        make_child=lambda name, argv, env: Child(name, argv, env=env, cwd=tmp_path),
        python="unused",
        boot=tmp_path / "unused.py",
    )
    try:
        with pytest.raises(ChildTimeoutError) as error:
            cluster.start(ready_timeout_s=stack.ready_timeout_s)
    finally:
        stopped = cluster.stop(grace_s=5)
    assert [child.name for child, _ in stopped] == ["redis"]  # no replica was started
    line = failure(error.value, stack)
    assert line.startswith("make run failed: the redis was not ready within 0.001 s")
    assert line.endswith("set STACK_READY_TIMEOUT_S to wait longer than 0.001 s")
