"""The Dockerfile, checked without a Docker engine.

The fast tests compute the build context the way Docker does (.dockerignore, last match wins)
and check what the image copies and how it runs against the Kubernetes manifests. The slow
test replays the Dockerfile itself: every builder RUN step in a temporary root standing for
"/", the runtime stage's files laid out as COPY lays them, then the image's CMD is started and
its HEALTHCHECK command must succeed. It installs the API's requirements from the package
index (about a minute), which is the price of proving the build steps CI does not otherwise run.
"""

from __future__ import annotations

import fnmatch
import http.server
import io
import itertools
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import dockerfile
import pytest

from cats_dogs_other.api.settings import Settings
from tests.deploy.support import REPO_ROOT

# Directories no build would ever send; pruned from the walk for speed, and asserted excluded.
NEVER_SENT = (".git", ".venv", "node_modules")


class DockerIgnore:
    """Docker's .dockerignore rules: Go globs plus `**`, `!` re-includes, last match wins."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
            self.rules.append((include, re.compile(self._translate(pattern))))

    @staticmethod
    def _translate(pattern: str) -> str:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[" and "]" in pattern[i:]:
                end = pattern.index("]", i)
                out, i = out + fnmatch.translate(pattern[i : end + 1])[4:-3], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return out

    def excluded(self, path: str) -> bool:
        """A rule matches a path or any of its parent folders (excluding a folder excludes all)."""
        parts = PurePosixPath(path).parts
        candidates = ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]
        excluded = False
        for include, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not include
        return excluded


@pytest.fixture(scope="module")
def dockerignore() -> DockerIgnore:
    return DockerIgnore((REPO_ROOT / ".dockerignore").read_text())


@pytest.fixture(scope="module")
def build_context(dockerignore: DockerIgnore) -> set[str]:
    """Relative paths of the files `docker build .` would send."""
    files: set[str] = set()
    for directory, subdirs, names in os.walk(REPO_ROOT):
        rel_dir = Path(directory).relative_to(REPO_ROOT)
        subdirs[:] = [d for d in subdirs if not (rel_dir == Path(".") and d in NEVER_SENT)]
        for name in names:
            rel = (rel_dir / name).as_posix()
            if not dockerignore.excluded(rel):
                files.add(rel)
    return files


def copy_sources(command: dockerfile.Command) -> list[str]:
    return [src.rstrip("/") or "." for src in command.value[:-1]]


def context_files_under(context: set[str], source: str) -> list[str]:
    source = os.path.normpath(source)
    return sorted(f for f in context if f == source or f.startswith(source + "/"))


def test_every_copy_source_is_in_the_build_context(
    dockerfile_commands: tuple[dockerfile.Command, ...], build_context: set[str]
) -> None:
    copies = [c for c in dockerfile_commands if c.cmd == "COPY" and not _flag(c, "from")]
    assert copies, "the Dockerfile copies nothing from the context"
    for command in copies:
        for source in copy_sources(command):
            assert context_files_under(build_context, source), (
                f"line {command.start_line}: COPY {source} has no file in the build context "
                "(missing from the repository, or excluded by .dockerignore)"
            )


def test_context_is_what_the_docker_client_sends(build_context: set[str]) -> None:
    """Docker's own CLI computes the context and hands it to a fake daemon on a Unix socket."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI (the client is enough: no engine is used)")
    with tempfile.TemporaryDirectory(prefix="docker-", dir="/tmp") as tmp:
        daemon = _ContextCatcher(str(Path(tmp) / "docker.sock"))
        threading.Thread(target=daemon.serve_forever, daemon=True).start()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "DOCKER_CONFIG": tmp,
            "DOCKER_HOST": f"unix://{daemon.server_address}",
            "DOCKER_BUILDKIT": "0",  # the classic client sends the context as one tar
        }
        try:
            result = subprocess.run(
                [docker, "build", "--quiet", "."],
                cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        finally:
            daemon.shutdown()
            daemon.server_close()
    if daemon.context is None:
        # A client without the classic builder talks BuildKit's session protocol instead.
        pytest.skip(f"this docker client sent no classic build context: {result.stderr[-300:]}")
    # The client always sends the Dockerfile and .dockerignore themselves.
    assert daemon.context == build_context | {"Dockerfile", ".dockerignore"}


class _ContextCatcher(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Just enough of the Engine API for `docker build`: answers the ping, keeps the context."""

    daemon_threads = True
    context: set[str] | None = None

    def __init__(self, path: str) -> None:
        super().__init__(path, _EngineHandler)


class _EngineHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ContextCatcher

    def address_string(self) -> str:
        return "docker.sock"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Api-Version", "1.47")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._reply(200)

    def do_GET(self) -> None:
        self._reply(200 if self.path.endswith("/_ping") else 404, b"OK")

    def do_POST(self) -> None:
        if "/build" not in self.path:
            self._reply(404, b"{}")
            return
        with tarfile.open(fileobj=io.BytesIO(self._body())) as archive:
            self.server.context = {m.name for m in archive.getmembers() if m.isfile()}
        self._reply(500, b'{"message": "context received; this daemon builds nothing"}')

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        chunks = []
        while size := int(self.rfile.readline().strip(), 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "node_modules/@usebruno/cli/package.json",
        "tests/conftest.py",
        "bench/results/report.md",
        "mlruns/0/meta.yaml",
        "mlflow.db",
        ".env",
        "cats_dogs_other/api/packages/kto_keras_inference-0.1.0-py3-none-any.whl",
        "cats_dogs_other/api/__pycache__/app.cpython-311.pyc",
        "cats_dogs_other/train/cli.py",
        "cats_dogs_other/dev_issuer/keys.py",
    ],
)
def test_local_state_and_other_code_stay_out_of_the_context(
    dockerignore: DockerIgnore, path: str
) -> None:
    assert dockerignore.excluded(path)


def test_the_image_gets_the_api_the_default_model_and_the_wheel_sources(
    build_context: set[str],
) -> None:
    for required in (
        "boot.py",
        "init_packages.sh",
        "cats_dogs_other/__init__.py",
        "cats_dogs_other/api/app.py",
        "cats_dogs_other/api/requirements.txt",
        "cats_dogs_other/model/model.keras",
        "packages/inference/pyproject.toml",
    ):
        assert required in build_context, f"{required} is not sent to the Docker daemon"


def test_runtime_stage_runs_as_the_kubernetes_user_on_the_served_port(
    final_stage: list[dockerfile.Command], deployment: dict[str, Any], api_container: dict[str, Any]
) -> None:
    (user,) = [c.value[0] for c in final_stage if c.cmd == "USER"]
    uid, _, gid = user.partition(":")
    pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert int(uid) == pod_security["runAsUser"] != 0, "a numeric non-root USER, as in the pod"
    assert int(gid) == pod_security["runAsGroup"]

    (exposed,) = [c.value[0] for c in final_stage if c.cmd == "EXPOSE"]
    (port,) = api_container["ports"]
    assert int(exposed) == port["containerPort"] == Settings.model_fields["port"].default

    cmd = next(c for c in final_stage if c.cmd == "CMD")
    assert cmd.json, "exec form, so SIGTERM reaches python directly (graceful shutdown)"
    assert cmd.value == ("python", "boot.py")


def test_healthcheck_asks_health_with_the_standard_library(
    final_stage: list[dockerfile.Command], api_container: dict[str, Any]
) -> None:
    (check,) = [c for c in final_stage if c.cmd == "HEALTHCHECK"]
    kind, *command = check.value
    assert kind == "CMD" and check.json
    assert command[:2] == ["python", "-c"], "no curl in python:*-slim"
    assert "/health" in command[2]
    assert api_container["livenessProbe"]["httpGet"]["path"] == "/health"
    start_period = _seconds(_flag(check, "start-period") or "0s")
    startup = api_container["startupProbe"]
    assert start_period >= startup["periodSeconds"] * startup["failureThreshold"] * 0.75, (
        "the HEALTHCHECK start period should cover the model load like the startup probe"
    )


def test_runtime_env_sends_every_write_to_tmp(
    final_stage: list[dockerfile.Command], api_container: dict[str, Any]
) -> None:
    env = _env_of(final_stage)
    pod_env = {item["name"]: item["value"] for item in api_container["env"]}
    for name in ("HOME", "KERAS_HOME", "MODEL_CACHE_DIR"):
        assert env[name].startswith("/tmp"), name
        assert pod_env[name] == env[name], f"{name} differs between the image and the pod"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"


# --- the replay: the Dockerfile's own steps, run without Docker --------------------------------


@dataclass
class Stage:
    name: str
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Replay:
    """Runs a Dockerfile's stages in `root`, a folder standing for the image's "/"."""

    root: Path
    context: set[str]
    base_env: dict[str, str]
    stages: dict[str, Stage] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def host(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def reroot(self, value: str) -> str:
        """Absolute container paths in an ENV value (PATH lists too) move under the root."""
        if "://" in value:
            return value
        return ":".join(
            str(self.host(part)) if part.startswith("/") else part for part in value.split(":")
        )

    def run(self, commands: list[dockerfile.Command], *, execute_run: bool) -> Stage:
        stage = Stage(name="")
        for command in commands:
            handler = getattr(self, f"_do_{command.cmd.lower()}", None)
            assert handler, f"line {command.start_line}: replay does not know {command.cmd}"
            handler(stage, command, execute_run)
        return stage

    def _do_from(self, stage: Stage, command: dockerfile.Command, _: bool) -> None:
        assert command.value[0].startswith("python:3.11"), "CI and the image run Python 3.11"
        stage.name = command.value[2] if len(command.value) == 3 else command.value[0]
        stage.env = dict(self.base_env)
        self.stages[stage.name] = stage

    def _do_env(self, stage: Stage, command: dockerfile.Command, _: bool) -> None:
        pairs = command.value
        for name, value in zip(pairs[::2], pairs[1::2], strict=True):
            stage.env[name] = _expand(self.reroot(value), stage.env)

    def _do_workdir(self, stage: Stage, command: dockerfile.Command, _: bool) -> None:
        stage.workdir = str(PurePosixPath(stage.workdir, command.value[0]))
        self.host(stage.workdir).mkdir(parents=True, exist_ok=True)

    def _do_copy(self, stage: Stage, command: dockerfile.Command, _: bool) -> None:
        *sources, dest = command.value
        target = self.host(str(PurePosixPath(stage.workdir, dest)))
        origin = _flag(command, "from")
        if origin:
            assert origin in self.stages, f"COPY --from={origin}: no such stage"
            for source in sources:
                # Every stage shares this root, so the same path in both stages is already there.
                assert self.host(source) == target, "replay expects COPY --from to the same path"
            return
        for source in copy_sources(command):
            files = context_files_under(self.context, source)
            assert files, f"COPY {source}: nothing in the build context"
            for rel in files:
                inside = Path(rel).relative_to(source) if rel != source else Path(Path(rel).name)
                into = target / inside if rel != source or dest.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / rel, into)

    def _do_run(self, stage: Stage, command: dockerfile.Command, execute: bool) -> None:
        script = command.value[0]
        assert "/opt/" not in script and "/src" not in script, (
            f"line {command.start_line}: name paths through ENV variables so they can be replayed"
        )
        if not execute:
            # Runtime-stage RUN steps create the user; never run useradd on this machine.
            assert script.startswith("groupadd"), f"unexpected runtime RUN: {script}"
            return
        started = time.monotonic()
        result = subprocess.run(
            ["/bin/sh", "-c", script],
            cwd=self.host(stage.workdir),
            env=stage.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        self.log.append(f"RUN line {command.start_line}: {time.monotonic() - started:.1f} s")
        assert result.returncode == 0, f"RUN {script}\n{result.stdout[-3000:]}\n{result.stderr}"

    def _do_user(self, stage: Stage, command: dockerfile.Command, _: bool) -> None:
        stage.env["EXPECTED_USER"] = command.value[0]

    def _do_expose(self, *_: Any) -> None:
        pass

    def _do_healthcheck(self, *_: Any) -> None:
        pass

    def _do_cmd(self, *_: Any) -> None:
        pass


@dataclass
class ReplayedImage:
    replay: Replay
    runtime: Stage
    cmd: tuple[str, ...]
    healthcheck: tuple[str, ...]


@pytest.fixture(scope="module")
def replayed_image(
    dockerfile_commands: tuple[dockerfile.Command, ...], build_context: set[str]
) -> Iterator[ReplayedImage]:
    """The image's filesystem, built by the Dockerfile's own steps in a temporary root."""
    starts = [i for i, c in enumerate(dockerfile_commands) if c.cmd == "FROM"] + [
        len(dockerfile_commands)
    ]
    stages = [list(dockerfile_commands[a:b]) for a, b in itertools.pairwise(starts)]
    with tempfile.TemporaryDirectory(prefix="image-replay-") as tmp:
        root = Path(tmp)
        shims = root / "usr" / "local" / "bin"
        shims.mkdir(parents=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        for name in ("python", "python3"):
            (shims / name).symlink_to(base_python)
        (root / "tmp").mkdir()
        replay = Replay(root, build_context, _base_image_env(root, shims))
        for stage in stages[:-1]:
            replay.run(stage, execute_run=True)
        runtime = replay.run(stages[-1], execute_run=False)
        print("image replay:", "; ".join(replay.log))  # step timings, shown with -s / -rA
        final = stages[-1]
        yield ReplayedImage(
            replay=replay,
            runtime=runtime,
            cmd=next(c.value for c in final if c.cmd == "CMD"),
            healthcheck=next(c.value for c in final if c.cmd == "HEALTHCHECK")[1:],
        )


@pytest.mark.slow
def test_replayed_venv_is_consistent_and_imports_the_app(replayed_image: ReplayedImage) -> None:
    image = replayed_image
    env, cwd = image.runtime.env, image.replay.host(image.runtime.workdir)
    check = subprocess.run(["python", "-m", "pip", "check"], cwd=cwd, env=env, capture_output=True)
    assert check.returncode == 0, check.stdout
    probe = subprocess.run(
        ["python", "-c", "import kto.inference, cats_dogs_other.api.app as a; print(a.__file__)"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    # The app comes from the image's /app, not from this checkout.
    assert Path(probe.stdout.strip()).is_relative_to(image.replay.host("/app"))


@pytest.mark.slow
def test_replayed_venv_serves_onnx_without_tensorflow(
    replayed_image: ReplayedImage, tmp_path: Path
) -> None:
    """The serving install has no TensorFlow/Keras; a Keras-only model is refused in one line."""
    image = replayed_image
    env, cwd = image.runtime.env, image.replay.host(image.runtime.workdir)
    keras_only = tmp_path / "keras-only"
    keras_only.mkdir()
    for name in ("model.keras", "metadata.json"):
        shutil.copy2(cwd / "cats_dogs_other" / "model" / name, keras_only / name)
    code = f"""
import importlib.util, sys
from pathlib import Path
assert not [m for m in ("tensorflow", "keras") if importlib.util.find_spec(m)], "TF installed"
from kto.inference import Inference, ModelLoadError
from cats_dogs_other.api.model_source import ModelSourceError, _model_folder
inf = Inference("cats_dogs_other/model", warmup=False)
assert inf.backend == "onnx", inf
keras_only = Path({str(keras_only)!r})
for attempt in (lambda: Inference(keras_only), lambda: _model_folder(keras_only, "models:/m/1")):
    try:
        attempt()
    except (ModelLoadError, ModelSourceError) as exc:
        assert "kto-keras-inference[keras]" in str(exc) and "\\n" not in str(exc), exc
    else:
        sys.exit("a Keras-only model was accepted without TensorFlow")
"""
    probe = subprocess.run(
        ["python", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    venv = Path(image.runtime.env["VIRTUAL_ENV"])  # rerooted by the replay
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"serving venv: {size / 1e6:.0f} MB")  # the README's figure, shown with -s / -rA


@pytest.mark.slow
def test_replayed_image_serves_health_and_stops_within_the_grace_period(
    replayed_image: ReplayedImage, deployment: dict[str, Any]
) -> None:
    image = replayed_image
    port = _free_port()
    env = {
        **image.runtime.env,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        # Nothing listens there: the API must still start and answer /health (keys come later).
        "OAUTH2_ISSUER": f"http://127.0.0.1:{_free_port()}/",
        "OAUTH2_AUDIENCE": "https://cats-dogs-other.local",
    }
    cwd = image.replay.host(image.runtime.workdir)
    server = subprocess.Popen(
        list(image.cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        healthy = _wait_healthy(image.healthcheck, cwd, env, server, deadline_s=180)
        assert healthy, _output(server)
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=grace)
        # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean stop too.
        assert code in (0, -signal.SIGTERM), _output(server)
        assert time.monotonic() - started < grace
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _wait_healthy(
    healthcheck: tuple[str, ...],
    cwd: Path,
    env: dict[str, str],
    server: subprocess.Popen[bytes],
    *,
    deadline_s: float,
) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and server.poll() is None:
        check = subprocess.run(list(healthcheck), cwd=cwd, env=env, capture_output=True, timeout=30)
        if check.returncode == 0:
            return True
        time.sleep(1)
    return False


def _output(server: subprocess.Popen[bytes]) -> str:
    if server.poll() is None:
        server.kill()
    out, _ = server.communicate(timeout=10)
    return out.decode(errors="replace")[-4000:]


def _base_image_env(root: Path, shims: Path) -> dict[str, str]:
    """What python:3.11-slim sets, plus this machine's package-index settings."""
    env = {
        "PATH": f"{shims}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(root / "root"),
        "LANG": "C.UTF-8",
    }
    passthrough = ("PIP_", "SSL_CERT", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY")
    for name, value in os.environ.items():
        if name.upper().startswith(passthrough) or name.upper() == "NO_PROXY":
            env[name] = value
    return env


def _env_of(stage: list[dockerfile.Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for command in stage:
        if command.cmd == "ENV":
            env.update(zip(command.value[::2], command.value[1::2], strict=True))
    return env


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def _flag(command: dockerfile.Command, name: str) -> str | None:
    for flag in command.flags:
        key, _, value = flag.removeprefix("--").partition("=")
        if key == name:
            return value
    return None


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    return total


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
