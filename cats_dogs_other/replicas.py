"""Several API replicas on one machine: redis-server holds their shared state, HAProxy fronts them.

:class:`Cluster` starts and stops the three kinds of process (the development issuer is the
caller's): ``make run-replicas`` (:mod:`cats_dogs_other.stack`) supervises one, the fault tests
and ``python -m reliability``'s ``replicas`` check kill and restart its parts on purpose.

HAProxy balances round-robin and checks every replica's ``/ready`` each second; one failed
check marks a replica down, one success brings it back. A replica told to stop (SIGTERM) answers
``/ready`` with 503 for ``SHUTDOWN_DRAIN_S`` while it still serves, so HAProxy stops sending it
work before its listener closes. A request whose connection could not be made is retried on
another replica whatever its method (nothing reached a server yet); a request that reached a
replica and got no usable answer is retried only for GET and HEAD, the idempotent methods.

Redis runs without persistence (``--save ''``, no AOF) and with ``maxmemory-policy noeviction``:
the API's fail-closed DPoP replay check needs a store that refuses writes when full rather than
forgetting used proofs.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL, SIGTERM, SIGUSR1

from cats_dogs_other.loopback import LOOPBACK, Child, free_port

CHECK_INTERVAL_MS = 1000  # HAProxy's /ready check period; one failure marks a replica down
DRAIN_S = 3  # SHUTDOWN_DRAIN_S of every replica the stack starts: > one check interval
REDIS_MAXMEMORY = "256mb"
SERVICE_READY_S = 20  # how long redis-server and HAProxy get by default to answer
HAPROXY_HARD_STOP_S = 10  # a soft stop (SIGUSR1) waits this long for requests in flight
INSTALL_HINT = "run `bash scripts/install-services.sh` (as root or with sudo) to install it"

# redis-server and haproxy need nothing of the caller's environment but where programs are.
SERVICE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}

ChildFactory = Callable[[str, Sequence[str], Mapping[str, str]], Child]


class ServiceMissingError(RuntimeError):
    """``redis-server`` or ``haproxy`` is not installed; the message says how to install it."""


def require(binary: str) -> str:
    """The path of ``binary`` on PATH (Debian puts haproxy in /usr/sbin, added here)."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if found is None:
        raise ServiceMissingError(f"{binary} is not installed; {INSTALL_HINT}")
    return found


def redis_argv(binary: str, port: int, workdir: Path) -> list[str]:
    """A loopback-only, non-persistent Redis that refuses writes when full (never evicts)."""
    return [
        binary,
        "--bind", LOOPBACK, "--port", str(port), "--protected-mode", "yes",
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
        "--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "noeviction",
        "--loglevel", "warning",
    ]  # fmt: skip


def redis_command(port: int, *args: str, timeout_s: float = 1.0) -> bytes:
    """One RESP command to the Redis on ``port``; the raw reply (first read), b"" on failure."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s) as sock:
            sock.sendall(b"".join(parts))
            return sock.recv(65536)
    except OSError:
        return b""


def redis_ping(port: int) -> bool:
    return redis_command(port, "PING") == b"+PONG\r\n"


@dataclass(frozen=True)
class Backend:
    """One replica as HAProxy knows it."""

    name: str
    port: int


def haproxy_config(
    *,
    bind_host: str,
    port: int,
    backends: Sequence[Backend],
    admin_socket: Path,
    timeout_server_s: float = 60,
) -> str:
    """The HAProxy configuration of the stack (see the module docstring for the choices)."""
    servers = "\n".join(
        f"    server {backend.name} {LOOPBACK}:{backend.port} check" for backend in backends
    )
    interval = f"{CHECK_INTERVAL_MS}ms"
    return f"""\
global
    log stdout format raw local0 info
    stats socket {admin_socket} mode 600 level admin
    hard-stop-after {HAPROXY_HARD_STOP_S}s
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    # A new connection to a replica per request: a replica that is draining closes idle
    # keep-alive connections, and a request sent on one as it closes could not be retried.
    option http-server-close
    # The request (up to one 16 kB buffer) reaches a replica whole: a replica that answers early
    # (401, 429, 503 before reading an upload) and closes has then nothing unread to reset, and
    # a slow client ties up HAProxy, not a replica.
    option http-buffer-request
    timeout connect 1s
    timeout client 60s
    timeout http-request 30s
    timeout http-keep-alive 10s
    timeout queue 10s
    timeout server {timeout_server_s:g}s
    timeout check 1s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response response-timeout 0rtt-rejected

frontend api
    bind {bind_host}:{port}
    # Answer-based retries only for the idempotent methods; a connection failure is retried
    # for every method (nothing reached a replica).
    http-request disable-l7-retry unless METH_GET || {{ method HEAD }}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri /ready
    http-check expect status 200
    default-server inter {interval} fastinter {interval} downinter {interval} fall 1 rise 1
{servers}
"""


def haproxy_admin(admin_socket: Path, command: str, timeout_s: float = 2.0) -> str:
    """One command on HAProxy's runtime API (its unix socket); the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(admin_socket))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_states(admin_socket: Path) -> dict[str, str]:
    """Each replica's state as HAProxy sees it now: ``{"replica-1": "UP", ...}``."""
    try:
        lines = haproxy_admin(admin_socket, "show stat").splitlines()
    except OSError:
        return {}
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    states = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "replicas" and row.get("svname") not in ("FRONTEND", "BACKEND"):
            states[row["svname"]] = row.get("status", "")
    return states


class Cluster:
    """Redis, N replicas of the API (``boot.py``) sharing it, and HAProxy in front.

    ``api_env`` is every replica's environment (issuer, audience, model...); each replica adds
    its ``HOST``, ``PORT``, ``REPLICA_ID`` and the shared ``STATE_URL``, plus
    ``DPOP_PUBLIC_URL`` (the load balancer's URL: proofs are signed for it) and
    ``SHUTDOWN_DRAIN_S`` unless ``api_env`` sets them. ``make_child(name, argv, env)`` builds
    each process, not yet started, with exactly ``env`` (forwarding its output, or logging it
    to a file).
    """

    def __init__(
        self,
        *,
        replicas: int,
        api_env: Mapping[str, str],
        workdir: Path,
        make_child: ChildFactory,
        python: str,
        boot: Path,
        lb_host: str = LOOPBACK,
        lb_port: int | None = None,
        redis_port: int | None = None,
        timeout_server_s: float = 60,
    ) -> None:
        self.replicas = replicas
        self.workdir = workdir
        self.make_child = make_child
        self.python, self.boot = python, boot
        self.lb_host = lb_host
        self.lb_port = lb_port or free_port()
        self.redis_port = redis_port or free_port()
        self.replica_ports = [free_port() for _ in range(replicas)]
        self.lb_url = f"http://{LOOPBACK}:{self.lb_port}"
        self.state_url = f"redis://{LOOPBACK}:{self.redis_port}/0"
        self.admin_socket = workdir / "haproxy.sock"
        self.timeout_server_s = timeout_server_s
        self.api_env = dict(api_env)
        self.redis: Child | None = None
        self.haproxy: Child | None = None
        self.apis: list[Child | None] = [None] * replicas

    # --- names and URLs -------------------------------------------------------------------
    @staticmethod
    def replica_name(index: int) -> str:
        return f"replica-{index + 1}"

    def replica_url(self, index: int) -> str:
        return f"http://{LOOPBACK}:{self.replica_ports[index]}"

    def replica_environment(self, index: int) -> dict[str, str]:
        env = dict(self.api_env)
        env.setdefault("DPOP_PUBLIC_URL", self.lb_url)
        env.setdefault("SHUTDOWN_DRAIN_S", str(DRAIN_S))
        env.update(
            HOST=LOOPBACK,
            PORT=str(self.replica_ports[index]),
            REPLICA_ID=self.replica_name(index),
            STATE_URL=self.state_url,
        )
        return env

    # --- starting -------------------------------------------------------------------------
    def start(self, *, ready_timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Everything up and HAProxy routing to every replica; False if ``stop`` came first.

        ``ready_timeout_s`` bounds each wait (Redis, every replica, HAProxy), so one setting
        (``STACK_READY_TIMEOUT_S`` of ``make run-replicas``) lengthens them all.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.start_redis(stop=stop, timeout_s=ready_timeout_s):
            return False
        for index in range(self.replicas):
            self.start_replica(index, wait=False)
        for index in range(self.replicas):
            if not self.wait_replica(index, timeout_s=ready_timeout_s, stop=stop):
                return False
        return self.start_haproxy(stop=stop, timeout_s=ready_timeout_s)

    def start_redis(
        self, *, stop: threading.Event | None = None, timeout_s: float = SERVICE_READY_S
    ) -> bool:
        argv = redis_argv(require("redis-server"), self.redis_port, self.workdir)
        self.redis = self.make_child("redis", argv, SERVICE_ENV).start()
        return self.redis.wait_until(
            lambda: redis_ping(self.redis_port), "it answered PING", timeout_s=timeout_s, stop=stop
        )

    def start_replica(self, index: int, *, wait: bool = True, timeout_s: float = 180) -> Child:
        argv = [self.python, str(self.boot)]
        env = self.replica_environment(index)
        child = self.make_child(self.replica_name(index), argv, env).start()
        self.apis[index] = child
        if wait:
            self.wait_replica(index, timeout_s=timeout_s)
        return child

    def wait_replica(
        self, index: int, *, timeout_s: float, stop: threading.Event | None = None
    ) -> bool:
        child = self.apis[index]
        assert child is not None, f"{self.replica_name(index)} was never started"
        url = self.replica_url(index) + "/ready"
        return child.wait_http(url, timeout_s=timeout_s, interval_s=0.1, stop=stop)

    def start_haproxy(
        self, *, stop: threading.Event | None = None, timeout_s: float = SERVICE_READY_S
    ) -> bool:
        config = haproxy_config(
            bind_host=self.lb_host,
            port=self.lb_port,
            backends=[Backend(self.replica_name(i), p) for i, p in enumerate(self.replica_ports)],
            admin_socket=self.admin_socket,
            timeout_server_s=self.timeout_server_s,
        )
        path = self.workdir / "haproxy.cfg"
        path.write_text(config, encoding="utf-8")
        argv = [require("haproxy"), "-db", "-f", str(path)]
        self.haproxy = self.make_child("haproxy", argv, SERVICE_ENV).start()
        return self.haproxy.wait_until(
            self.all_up, "every replica was UP", timeout_s=timeout_s, interval_s=0.1, stop=stop
        )

    def states(self) -> dict[str, str]:
        return server_states(self.admin_socket)

    def all_up(self) -> bool:
        states = self.states()
        return len(states) == self.replicas and all(s == "UP" for s in states.values())

    # --- faults ---------------------------------------------------------------------------
    def kill_replica(self, index: int) -> None:
        """SIGKILL: no drain, requests in flight on it are lost."""
        child = self.apis[index]
        assert child is not None
        child.stop(grace_s=5, signum=SIGKILL)

    def stop_replica(self, index: int, grace_s: float = 60) -> int | None:
        """SIGTERM: the replica drains (``/ready`` 503), finishes what it holds and exits."""
        child = self.apis[index]
        assert child is not None
        return child.stop(grace_s=grace_s, signum=SIGTERM)

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop(grace_s=5, signum=SIGKILL)

    # --- stopping -------------------------------------------------------------------------
    def children(self) -> list[Child]:
        """Every started process, in the order they are stopped: the front first."""
        apis = [child for child in self.apis if child is not None]
        return [c for c in (self.haproxy, *apis, self.redis) if c is not None]

    def check_alive(self) -> None:
        for child in self.children():
            child.check_alive()

    def stop(self, grace_s: float = 15) -> list[tuple[Child, int | None]]:
        """HAProxy soft-stops (finishes what it carries), then every replica is told to stop
        at once (each drains in parallel), then Redis; returns each child's exit status."""
        stopped: list[tuple[Child, int | None]] = []
        if self.haproxy is not None:
            stopped.append((self.haproxy, self.haproxy.stop(grace_s, signum=SIGUSR1)))
        apis = [child for child in self.apis if child is not None]
        for child in apis:
            child.signal(SIGTERM)  # once: a second SIGTERM makes uvicorn skip its graceful stop
        for child in apis:
            if child.wait(grace_s + DRAIN_S) is None:
                child.killed = True
            stopped.append((child, child.stop(grace_s=5, signum=SIGKILL)))  # SIGKILL if still up
        if self.redis is not None:
            stopped.append((self.redis, self.redis.stop(grace_s)))
        return stopped
