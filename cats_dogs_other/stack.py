"""``make run``: the development issuer and the API, wired together, in one command.

Starts ``python -m cats_dogs_other.dev_issuer`` and ``boot.py`` as child processes (each in its
own session, so Ctrl-C reaches only this supervisor, which then stops them in order),
waits until the API's ``/ready`` answers 200, prints the two curl commands a newcomer needs,
and on Ctrl-C or SIGTERM stops both children (SIGTERM, wait, then SIGKILL) and exits 0.
Exits non-zero, with the failing child's last log lines, if the stack does not come up.

``--replicas N`` (N > 1, ``make run-replicas``) starts ``redis-server``, N API replicas sharing
it through ``STATE_URL`` and HAProxy in front on the API port instead of the one API
(:mod:`cats_dogs_other.replicas`); the printed commands then go through the load balancer.
"""

import argparse
import errno
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from cats_dogs_other.core.cli_help import EnvironmentHelpFormatter
from cats_dogs_other.core.dev import DEV_API_PORT, DEV_ISSUER_PORT, DEV_TOKEN_PATH, SCOPE
from cats_dogs_other.core.hosts import connect_host
from cats_dogs_other.dev_issuer.github import DEFAULT_JOB
from cats_dogs_other.dev_issuer.settings import IssuerSettings
from cats_dogs_other.loopback import LOOPBACK, ROOT, Child, ChildError, ChildTimeoutError
from cats_dogs_other.replicas import Cluster, ServiceMissingError

SAMPLE_IMAGE = ROOT / "bruno" / "fixtures" / "cat.png"
REQUIRED_SCOPE = SCOPE


class StackSettings(BaseSettings):
    """Ports and patience of ``make run``; overridable so tests can use free ports."""

    model_config = SettingsConfigDict(extra="ignore")

    api_host: str = LOOPBACK
    api_port: Annotated[int, Field(ge=1, le=65535)] = DEV_API_PORT
    issuer_port: Annotated[int, Field(ge=1, le=65535)] = DEV_ISSUER_PORT
    ready_timeout_s: Annotated[float, Field(gt=0, validation_alias="STACK_READY_TIMEOUT_S")] = 180
    stop_timeout_s: Annotated[float, Field(gt=0, validation_alias="STACK_STOP_TIMEOUT_S")] = 15


# Each setting's environment variable and what it must be, for one-line errors.
SETTING_NAMES = {
    "api_host": "API_HOST",
    "api_port": "API_PORT",
    "issuer_port": "ISSUER_PORT",
    "ready_timeout_s": "STACK_READY_TIMEOUT_S",
    "STACK_READY_TIMEOUT_S": "STACK_READY_TIMEOUT_S",
    "stop_timeout_s": "STACK_STOP_TIMEOUT_S",
    "STACK_STOP_TIMEOUT_S": "STACK_STOP_TIMEOUT_S",
}
EXPECTED = {
    "API_PORT": "a port number from 1 to 65535",
    "ISSUER_PORT": "a port number from 1 to 65535",
    "STACK_READY_TIMEOUT_S": "a number of seconds above 0",
    "STACK_STOP_TIMEOUT_S": "a number of seconds above 0",
}


class StackError(Exception):
    """The stack could not come up; the message says which part and why."""


def load_settings(environ: Mapping[str, str] = os.environ) -> StackSettings:
    """The stack's settings, or a StackError naming the variable to fix."""
    try:
        return StackSettings()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        name = SETTING_NAMES.get(field, field.upper())
        expected = EXPECTED.get(name, "a valid value")
        raise StackError(
            f"{name}={environ.get(name, '')!r} is not valid ({error['msg']}): "
            f"set {name} to {expected}"
        ) from None


def load_issuer(stack: StackSettings) -> IssuerSettings:
    """The development issuer's settings on ISSUER_PORT; a DEV_ISSUER_* error names its variable."""
    try:
        return IssuerSettings(
            host=LOOPBACK, port=stack.issuer_port, url=f"http://{LOOPBACK}:{stack.issuer_port}/"
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]).upper() if error["loc"] else ""
        raise StackError(
            f"DEV_ISSUER_{field} is not valid ({error['msg']}): fix or unset it "
            "(python -m cats_dogs_other.dev_issuer --help)"
        ) from None


def _bindable(host: str, port: int) -> OSError | None:
    """None if ``host:port`` can be listened on now (as uvicorn binds), else why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        return exc
    return None


def _free_port_after(host: str, port: int, taken: set[int]) -> int | None:
    """The first port above ``port`` free now, to suggest; None if the next 50 are all taken."""
    for candidate in range(port + 1, min(port + 51, 65536)):
        if candidate not in taken and _bindable(host, candidate) is None:
            return candidate
    return None


def check_port(host: str, port: int, setting: str, target: str, taken: set[int]) -> None:
    """StackError naming ``setting`` if ``host:port`` cannot be listened on.

    The children's own messages name the variables they read (PORT, HOST), which the stack
    sets itself; checking first lets the error name the variable the user can change.
    """
    problem = _bindable(host, port)
    if problem is None:
        return
    if problem.errno == errno.EADDRINUSE:
        free = _free_port_after(host, port, taken)
        example = f", e.g. `{setting}={free} {target}`" if free else ""
        raise StackError(
            f"port {port} is already in use on {host}: stop the other server or set {setting} "
            f"to a free port{example}"
        )
    if problem.errno == errno.EACCES:
        raise StackError(
            f"cannot listen on {host}:{port} (permission denied): set {setting} above 1023"
        )
    reason = problem.strerror or problem
    if setting != "API_PORT":  # the issuer always listens on loopback
        raise StackError(
            f"cannot listen on {host}:{port} ({reason}): set {setting} to another port"
        )
    raise StackError(
        f"cannot listen on {host!r} ({reason}): set API_HOST to an address of this machine, "
        "e.g. 127.0.0.1 or 0.0.0.0"
    )


def check_ports(stack: StackSettings, replicas: int = 1) -> None:
    """The API's port (HAProxy's with replicas) and the issuer's are distinct and free."""
    target = "make run" if replicas == 1 else "make run-replicas"
    if stack.api_port == stack.issuer_port:
        raise StackError(
            f"API_PORT and ISSUER_PORT are both {stack.api_port}: set one of them to another port"
        )
    taken = {stack.api_port, stack.issuer_port}
    check_port(stack.api_host, stack.api_port, "API_PORT", target, taken)
    check_port(LOOPBACK, stack.issuer_port, "ISSUER_PORT", target, taken)


def failure(error: Exception, stack: StackSettings) -> str:
    """The last line of a failed start: what failed and the variable that fixes it.

    The children's output was forwarded as it came (prefixed with their names), so it is
    not repeated here.
    """
    if isinstance(error, ChildTimeoutError):
        return (
            f"make run failed: {error.summary}: set STACK_READY_TIMEOUT_S to wait longer than "
            f"{stack.ready_timeout_s:g} s"
        )
    if isinstance(error, ChildError):
        return f"make run failed: {error.summary} (its output is above)"
    return f"make run failed: {error}"


_print_lock = threading.Lock()


def say(line: str) -> None:
    """One line to stdout, unbroken by the children's log forwarders."""
    with _print_lock:
        print(line, flush=True)


class StopRequest(threading.Event):
    """Set by SIGINT or SIGTERM. The handler only records the signal and sets the event: a
    handler runs on the main thread between two of its bytecodes, so printing there could wait
    forever on :func:`say`'s lock, which the interrupted code may hold."""

    signal_name: str | None = None

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
        self.set()

    def announce(self, what: str) -> None:
        """Says which signal stopped the stack, from the thread that stops it."""
        if self.signal_name is not None:
            say(f"\n{self.signal_name} received: stopping {what}")


def forwarded_url(port: int, environ: Mapping[str, str] = os.environ) -> str | None:
    """The https URL GitHub Codespaces forwards ``port`` to, or None outside a codespace."""
    name = environ.get("CODESPACE_NAME", "").strip()
    domain = environ.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN", "").strip()
    if not (name and domain):
        return None
    return f"https://{name}-{port}.{domain}"


def dev_trust_policy(issuer: IssuerSettings) -> str:
    """TRUST_POLICY_FILE of `make run`: the GitHub stand-in's default repository, never GitHub."""
    job = {**DEFAULT_JOB, **issuer.github_job}
    return (
        "# written by `make run`: trusts the development issuer's GitHub stand-in only\n"
        "issuers:\n"
        "  - name: github-actions-dev\n"
        "    kind: github-actions\n"
        f"    issuer: {issuer.github_issuer}\n"
        "    rules:\n"
        f'      - repository_id: "{job["repository_id"]}"  # {job["repository"]}\n'
        f'        repository_owner_id: "{job["repository_owner_id"]}"\n'
        f"        scopes: [{REQUIRED_SCOPE}]\n"
    )


def child_environment(
    stack: StackSettings, issuer: IssuerSettings, trust_policy_file: str | None = None
) -> dict[str, str]:
    """The API is wired to the development issuer whatever the caller's shell says.

    In a codespace the browser reaches the API through a private forwarded port, and a
    cross-origin POST from Swagger UI to the issuer's forwarded port would be sent to GitHub's
    sign-in page. So the API relays the token request on its own origin
    (``DEV_TOKEN_PROXY_URL``), and the issuer keeps its loopback URL, the ``iss`` the API
    validates.
    """
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        DEV_ISSUER_URL=issuer.issuer,
        OAUTH2_ISSUER=issuer.issuer,
        OAUTH2_AUDIENCE=issuer.audience,
        HOST=stack.api_host,
        PORT=str(stack.api_port),
    )
    env.pop("OAUTH2_JWKS_URI", None)  # discovered from the issuer
    env.pop("TRUST_POLICY_FILE", None)  # the development stack trusts its stand-in only
    if trust_policy_file:
        env["TRUST_POLICY_FILE"] = trust_policy_file
    env.pop("DEV_TOKEN_PROXY_URL", None)
    if forwarded_url(stack.api_port, os.environ):
        env["DEV_TOKEN_PROXY_URL"] = issuer.token_endpoint
    return env


def describe_exit(code: int | None) -> str:
    """uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is a clean exit."""
    if code is None:
        return "never started"
    if code < 0:
        return f"ended by {signal.Signals(-code).name} after shutting down"
    return f"exit status {code}"


def client_with_scope(issuer: IssuerSettings) -> tuple[str, str]:
    """The configured client that may classify images (dev-client by default)."""
    for client_id, client in issuer.clients.items():
        if REQUIRED_SCOPE in client.scopes:
            return client_id, client.secret
    raise StackError(f"no DEV_ISSUER_CLIENTS entry is granted {REQUIRED_SCOPE}")


def curl_commands(stack: StackSettings, issuer: IssuerSettings) -> list[str]:
    """The two commands printed once the stack is ready (also run by the tests)."""
    client_id, secret = client_with_scope(issuer)
    form = [
        "grant_type=client_credentials",
        f"client_id={client_id}",
        f"client_secret={secret}",
        f"audience={issuer.audience}",
    ]
    extract = 'import json,sys; print(json.load(sys.stdin)["access_token"])'
    get_token = (
        f"TOKEN=$(curl -s {issuer.token_endpoint} "
        + " ".join(f"-d {shlex.quote(item)}" for item in form)
        + f" | python3 -c {shlex.quote(extract)})"
    )
    classify = (
        f"curl -s http://{connect_host(stack.api_host)}:{stack.api_port}/upload "
        '-H "Authorization: Bearer $TOKEN" '
        f"-F file=@{shlex.quote(str(SAMPLE_IMAGE))}"
    )
    return [get_token, classify]


def github_commands(stack: StackSettings, issuer: IssuerSettings) -> list[str]:
    """The secretless flow through the GitHub stand-in: the client, then the same with curl."""
    api = f"http://{connect_host(stack.api_host)}:{stack.api_port}"
    client = Path(sys.executable).with_name("cats-dogs-other")
    extract = 'import json,sys; print(json.load(sys.stdin)["value"])'
    runtime = f"{issuer.actions_id_token_request_url}&audience={issuer.audience}"
    return [
        f"export ACTIONS_ID_TOKEN_REQUEST_URL={shlex.quote(issuer.actions_id_token_request_url)} "
        f"ACTIONS_ID_TOKEN_REQUEST_TOKEN={issuer.github_request_token}",
        f"{shlex.quote(str(client))} classify --auth github-actions --api-url {api} "
        f"--audience {issuer.audience} {shlex.quote(str(SAMPLE_IMAGE))}",
        "# or by hand:",
        f'GH_TOKEN=$(curl -sS -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" '
        f"{shlex.quote(runtime)} | python3 -c {shlex.quote(extract)})",
        f'curl -sS {api}/upload -H "Authorization: Bearer $GH_TOKEN" '
        f"-F file=@{shlex.quote(str(SAMPLE_IMAGE))}",
    ]


def banner(stack: StackSettings, issuer: IssuerSettings, cluster: Cluster | None = None) -> str:
    api = f"http://{LOOPBACK}:{stack.api_port}"
    get_token, classify = curl_commands(stack, issuer)
    client_id, secret = client_with_scope(issuer)
    browser = forwarded_url(stack.api_port)
    if browser:
        where = [
            f"cats-dogs-other is ready in this codespace: API {api}",
            f"in your browser: {browser}/docs (Authorize: {client_id} / {secret})",
            f"                 {browser}/redoc",
            f"development issuer (NOT FOR PRODUCTION): {issuer.issuer} (the tokens' iss; "
            f"Swagger reaches it through {browser}{DEV_TOKEN_PATH})",
            "# in this codespace's terminal:",
        ]
    else:
        where = [
            f"cats-dogs-other is ready: API {api} (docs {api}/docs, "
            f"Authorize: {client_id} / {secret})",
            f"development issuer (NOT FOR PRODUCTION): {issuer.issuer}",
        ]
    if cluster is not None:
        replicas = ", ".join(cluster.replica_url(i) for i in range(cluster.replicas))
        where += [
            f"HAProxy on {api} balances {cluster.replicas} replicas: {replicas}",
            f"shared state (STATE_URL): {cluster.state_url}",
        ]
    return "\n".join(
        [
            "",
            "=" * 72,
            *where,
            "",
            "# 1. get a token (client credentials, exactly as against Auth0):",
            get_token,
            "# 2. classify an image:",
            classify,
            "",
            "# 3. secretless, as a GitHub Actions job would (the issuer's GitHub stand-in):",
            *github_commands(stack, issuer),
            "",
            "Press Ctrl-C to stop.",
            "=" * 72,
            "",
        ]
    )


def forwarding_child(name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
    """A child (not started yet) whose output is prefixed with its name and forwarded to ours."""
    return Child(name, argv, env=env, echo=lambda line: say(f"[{name}] {line}"))


def start_child(name: str, argv: list[str], env: Mapping[str, str]) -> Child:
    return forwarding_child(name, argv, env).start()


def report_stopped(child: Child, code: int | None, grace_s: float) -> None:
    if child.killed:
        say(f"the {child.name} did not stop within {grace_s:.0f} s; killed it")
    say(f"stopped the {child.name} ({describe_exit(code)})")


def run_replicas(
    stack: StackSettings, issuer: IssuerSettings, stop: StopRequest, replicas: int
) -> int:
    """Redis, the issuer, ``replicas`` APIs and HAProxy on the API port; as :func:`run`."""
    workdir = Path(tempfile.mkdtemp(prefix="cats-dogs-other-stack-"))
    policy = workdir / "trust-policy.yml"
    policy.write_text(dev_trust_policy(issuer), encoding="utf-8")
    env = child_environment(stack, issuer, str(policy))
    cluster = Cluster(
        replicas=replicas,
        api_env=env,
        workdir=workdir,
        make_child=forwarding_child,
        python=sys.executable,
        boot=ROOT / "boot.py",
        lb_host=stack.api_host,
        lb_port=stack.api_port,
    )
    issuer_child: Child | None = None
    try:
        issuer_argv = [sys.executable, "-m", "cats_dogs_other.dev_issuer", "--host", LOOPBACK]
        issuer_argv += ["--port", str(stack.issuer_port)]
        issuer_child = start_child("issuer", issuer_argv, env)
        health = issuer.issuer + "health"
        if not issuer_child.wait_http(health, timeout_s=stack.ready_timeout_s, stop=stop):
            return 0
        if not cluster.start(ready_timeout_s=stack.ready_timeout_s, stop=stop):
            return 0
        say(banner(stack, issuer, cluster))
        while not stop.wait(0.5):
            issuer_child.check_alive()
            cluster.check_alive()
        return 0
    except (StackError, ChildError, ServiceMissingError) as error:
        say("\n" + failure(error, stack))
        return 1
    finally:
        stop.announce("the stack")
        for child, code in cluster.stop(stack.stop_timeout_s):
            report_stopped(child, code, stack.stop_timeout_s)
        if issuer_child is not None:
            report_stopped(
                issuer_child, issuer_child.stop(stack.stop_timeout_s), stack.stop_timeout_s
            )
        shutil.rmtree(workdir, ignore_errors=True)


def run(stack: StackSettings, issuer: IssuerSettings, stop: StopRequest) -> int:
    """Bring the stack up, serve until ``stop`` is set or a child dies, then shut down."""
    policy_dir = tempfile.TemporaryDirectory(prefix="cats-dogs-other-")
    policy = Path(policy_dir.name) / "trust-policy.yml"
    policy.write_text(dev_trust_policy(issuer), encoding="utf-8")
    env = child_environment(stack, issuer, str(policy))
    python = sys.executable
    children: list[Child] = []
    try:
        issuer_argv = [python, "-m", "cats_dogs_other.dev_issuer", "--host", LOOPBACK]
        children.append(
            start_child("issuer", [*issuer_argv, "--port", str(stack.issuer_port)], env)
        )
        health = issuer.issuer + "health"
        if not children[-1].wait_http(health, timeout_s=stack.ready_timeout_s, stop=stop):
            return 0
        children.append(start_child("api", [python, str(ROOT / "boot.py")], env))
        ready_url = f"http://{LOOPBACK}:{stack.api_port}/ready"
        if not children[-1].wait_http(ready_url, timeout_s=stack.ready_timeout_s, stop=stop):
            return 0
        say(banner(stack, issuer))
        while not stop.wait(0.5):
            for child in children:
                child.check_alive()
        return 0
    except (StackError, ChildError) as error:
        say("\n" + failure(error, stack))
        return 1
    finally:
        stop.announce("the API and the issuer")
        for child in reversed(children):  # the API first: it depends on the issuer
            report_stopped(child, child.stop(stack.stop_timeout_s), stack.stop_timeout_s)
        policy_dir.cleanup()


STACK_ENVIRONMENT = """\
environment variables:
  API_PORT                  API port (default 8080; HAProxy's with --replicas N > 1)
  ISSUER_PORT               development issuer port (default 9000)
  API_HOST                  address the API listens on (default 127.0.0.1)
  STACK_READY_TIMEOUT_S     how long to wait for each part to be ready: the issuer, the API's
                            /ready, with --replicas redis-server and HAProxy (default 180)
  STACK_STOP_TIMEOUT_S      how long each child may take to stop on Ctrl-C (default 15)
  CODESPACE_NAME, GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN
                            set by GitHub Codespaces: print the forwarded https URLs and
                            relay Swagger's token request through the API's own origin
  DEV_ISSUER_*              the development issuer's settings
                            (python -m cats_dogs_other.dev_issuer --help)
  anything else             passed to the API (python boot.py --help); OAUTH2_ISSUER,
                            OAUTH2_AUDIENCE, HOST and PORT are set to wire it to the issuer;
                            with --replicas N > 1 also REPLICA_ID, STATE_URL (the stack's
                            redis-server), DPOP_PUBLIC_URL (HAProxy's URL unless set) and
                            SHUTDOWN_DRAIN_S (3 unless set)
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cats_dogs_other.stack",
        description="`make run`: start the development issuer and the API wired together, "
        "print working curl commands, stop everything on Ctrl-C.",
        epilog=STACK_ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
    )
    parser.add_argument(
        "--replicas",
        type=_positive,
        default=1,
        metavar="N",
        help="API replicas (default 1: the API alone on API_PORT); N > 1 adds redis-server "
        "(their shared STATE_URL) and HAProxy round-robin on API_PORT (`make run-replicas`)",
    )
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to 64 (REPLICAS=N make run-replicas), got {text!r}"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # --help prints and exits before anything starts
    try:
        stack = load_settings()
        issuer = load_issuer(stack)
        check_ports(stack, args.replicas)
    except StackError as error:
        print(f"make run failed: {error}", file=sys.stderr)
        return 2
    stop = StopRequest()
    signal.signal(signal.SIGINT, stop.on_signal)
    signal.signal(signal.SIGTERM, stop.on_signal)
    if args.replicas > 1:
        return run_replicas(stack, issuer, stop, args.replicas)
    return run(stack, issuer, stop)


if __name__ == "__main__":
    sys.exit(main())
