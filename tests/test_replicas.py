"""The replica stack's parts on their own: HAProxy accepts the generated configuration and it
says what the issue decided; redis-server started as the stack starts it refuses to evict."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cats_dogs_other.loopback import Child, free_port
from cats_dogs_other.replicas import (
    CHECK_INTERVAL_MS,
    SERVICE_ENV,
    Backend,
    ServiceMissingError,
    haproxy_config,
    redis_argv,
    redis_command,
    redis_ping,
    require,
)
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
