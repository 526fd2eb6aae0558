"""`make run`'s own errors: one line, naming the variable that fixes them.

The stack overrides the API's PORT and HOST, so the API's own messages would name variables
the user cannot change; these are the supervisor's checks before anything starts, on real
sockets bound on loopback.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from cats_dogs_other import stack
from cats_dogs_other.loopback import LOOPBACK, ROOT, Child, ChildError, free_port
from cats_dogs_other.stack import (
    StackError,
    StackSettings,
    StopRequest,
    check_ports,
    failure,
    load_issuer,
    load_settings,
    main,
)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another server listens on (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def settings(api_port: int, issuer_port: int) -> StackSettings:
    return StackSettings(api_port=api_port, issuer_port=issuer_port)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("API_PORT", "abc", "set API_PORT to a port number from 1 to 65535"),
        ("API_PORT", "70000", "set API_PORT to a port number from 1 to 65535"),
        ("ISSUER_PORT", "x", "set ISSUER_PORT to a port number from 1 to 65535"),
        ("STACK_READY_TIMEOUT_S", "0", "set STACK_READY_TIMEOUT_S to a number of seconds"),
        ("STACK_STOP_TIMEOUT_S", "soon", "set STACK_STOP_TIMEOUT_S to a number of seconds"),
    ],
)
def test_a_bad_setting_names_its_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(StackError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith(f"{name}={value!r} is not valid")
    assert expected in message
    assert "\n" not in message


def test_a_bad_issuer_setting_names_its_dev_issuer_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEV_ISSUER_TOKEN_LIFETIME_S", "0")
    with pytest.raises(StackError, match=r"^DEV_ISSUER_TOKEN_LIFETIME_S is not valid"):
        load_issuer(StackSettings())


def test_a_taken_api_port_names_api_port_and_a_free_one(taken_port: int) -> None:
    with pytest.raises(StackError) as error:
        check_ports(settings(taken_port, free_port()))
    message = str(error.value)
    assert f"port {taken_port} is already in use on {LOOPBACK}" in message
    assert "set API_PORT to a free port, e.g. `API_PORT=" in message
    assert "PORT " not in message.replace("API_PORT", "")  # never the API's own PORT
    suggested = int(message.split("`API_PORT=")[1].split()[0])
    with socket.socket() as sock:
        sock.bind((LOOPBACK, suggested))  # the suggestion is free


def test_a_taken_issuer_port_names_issuer_port(taken_port: int) -> None:
    with pytest.raises(StackError, match=r"set ISSUER_PORT to a free port, e\.g\. `ISSUER_PORT="):
        check_ports(settings(free_port(), taken_port))


def test_the_replica_stack_suggests_its_own_command(taken_port: int) -> None:
    """With --replicas HAProxy listens on API_PORT: the same variable, `make run-replicas`."""
    with pytest.raises(StackError, match=r"`API_PORT=\d+ make run-replicas`"):
        check_ports(settings(taken_port, free_port()), replicas=3)


def test_the_same_port_twice_names_both_variables() -> None:
    port = free_port()
    with pytest.raises(StackError, match=f"API_PORT and ISSUER_PORT are both {port}"):
        check_ports(settings(port, port))


def test_an_address_not_of_this_machine_names_api_host() -> None:
    stack = StackSettings(api_host="192.0.2.1", api_port=free_port(), issuer_port=free_port())
    with pytest.raises(StackError, match="set API_HOST to an address of this machine"):
        check_ports(stack)


def test_free_ports_pass() -> None:
    check_ports(settings(free_port(), free_port()))


def test_a_part_not_ready_in_time_names_stack_ready_timeout_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STACK_READY_TIMEOUT_S", "0.3")
    child = Child("api", [sys.executable, "-c", "import time; time.sleep(60)"], env={})
    child.start()
    try:
        with pytest.raises(ChildError) as error:
            child.wait_http(f"http://{LOOPBACK}:{free_port()}/ready", timeout_s=0.3)
    finally:
        child.stop(grace_s=5)
    line = failure(error.value, StackSettings())
    assert line.startswith("make run failed: the api was not ready within 0.3 s")
    assert line.endswith("set STACK_READY_TIMEOUT_S to wait longer than 0.3 s")
    assert "\n" not in line


def test_a_child_that_exits_is_one_line_pointing_at_its_output() -> None:
    child = Child("issuer", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], env={})
    child.start()
    with pytest.raises(ChildError) as error:
        child.wait_http(f"http://{LOOPBACK}:{free_port()}/health", timeout_s=30)
    child.stop(grace_s=5)
    line = failure(error.value, StackSettings())
    assert line == (
        "make run failed: the issuer exited with status 3 before "
        f"{child_url(error.value)} answered 200 (its output is above)"
    )


def child_url(error: ChildError) -> str:
    return error.summary.split(" before ")[1].split(" answered")[0]


def test_main_prints_one_line_and_exits_2_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("API_PORT", "abc")
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("make run failed: API_PORT='abc' is not valid")


def run_stack_command(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m cats_dogs_other.stack` as `make run` starts it, with only ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "cats_dogs_other.stack"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_make_runs_command_reports_a_port_clash_in_one_line(taken_port: int) -> None:
    """The real command, as `make run` starts it: no traceback, no child started."""
    env = {"PATH": "/usr/bin:/bin", "API_PORT": str(taken_port), "ISSUER_PORT": str(free_port())}
    result = run_stack_command(env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "set API_PORT to a free port" in result.stderr


# What `make run` leaves out (requirements.txt over requirements-stack.txt): the stack must
# neither need nor load any of it.
TRAINING_AND_TOOLS = ("tensorflow", "keras", "tf2onnx", "onnx", "sklearn", "matplotlib", "pytest")

_WITHOUT_TRAINING = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not in requirements-stack.txt)")
sys.meta_path.insert(0, Absent())
import boot, cats_dogs_other.stack, cats_dogs_other.api.app
from cats_dogs_other.dev_issuer.app import create_app
from kto.inference import Inference
create_app()
inference = Inference("cats_dogs_other/model", warmup=False)
print(inference.model_path.name, inference.execute(sys.argv[2])["prediction"])
"""


def test_the_stack_runs_without_the_training_and_tool_requirements() -> None:
    """`make run` installs requirements-stack.txt only: the supervisor, the issuer and the API
    import, and the bundled model answers from its model.int8.onnx (the default precision),
    with all of those absent."""
    cat = ROOT / "bruno" / "fixtures" / "cat.png"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TRAINING, ",".join(TRAINING_AND_TOOLS), str(cat)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["model.int8.onnx", "Cat"]


def test_a_stack_not_ready_in_time_ends_on_one_line_naming_stack_ready_timeout_s() -> None:
    """The real supervisor and issuer: 10 ms is less than any Python process takes to start."""
    env = {
        "PATH": "/usr/bin:/bin",
        "API_PORT": str(free_port()),
        "ISSUER_PORT": str(free_port()),
        "STACK_READY_TIMEOUT_S": "0.01",
    }
    result = run_stack_command(env)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if "make run failed" in line]
    assert len(failed) == 1, result.stdout
    assert failed[0].startswith("make run failed: the issuer was not ready within 0.01 s")
    assert failed[0].endswith("set STACK_READY_TIMEOUT_S to wait longer than 0.01 s")
    assert "stopped the issuer" in result.stdout


def test_make_run_installs_the_stack_only_and_setup_adds_to_it() -> None:
    """`make run` depends on the .venv/.stack stamp (requirements-stack.txt), not on `setup`;
    requirements.txt (`make setup`: test, train, lint) includes the stack's requirements."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    prerequisites = {
        line.split(":", 1)[0]: line.split(":", 1)[1].split()
        for line in makefile.splitlines()
        if line.startswith(("run:", "run-replicas:"))
    }
    assert prerequisites == {
        "run": ["$(VENV)/.stack"],
        "run-replicas": ["$(VENV)/.stack", "services"],
    }
    assert "-r requirements-stack.txt" in (ROOT / "requirements.txt").read_text().splitlines()
    stack = (ROOT / "requirements-stack.txt").read_text().splitlines()
    assert "-r cats_dogs_other/api/requirements.txt" in stack


def test_ctrl_c_while_the_stack_prints_stops_it_without_waiting_for_the_print_lock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A signal handler runs on the thread it interrupts: if that thread is inside say(), a
    handler that prints waits forever for the lock its own thread holds (SIGINT and SIGTERM
    are then ignored). The handler here runs with the lock held, as it would mid-banner."""
    stop = StopRequest()

    def signal_mid_print() -> None:
        with stack._print_lock:
            stop.on_signal(signal.SIGINT, None)
            stop.on_signal(signal.SIGTERM, None)

    handler = threading.Thread(target=signal_mid_print, daemon=True)
    handler.start()
    handler.join(timeout=5)
    assert not handler.is_alive(), "the signal handler waited for the print lock"
    assert stop.is_set()
    stop.announce("the API and the issuer")  # from the main loop, once it sees the event
    assert capsys.readouterr().out == "\nSIGINT received: stopping the API and the issuer\n"
