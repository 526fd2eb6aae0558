"""The Dockerfile's checks without a Docker engine: the build context, a fake engine, a replay.

- :class:`DockerIgnore` and :func:`build_context`: the files ``docker build .`` sends, computed
  the way Docker does (.dockerignore, last match wins);
- :func:`context_sent_by_docker_client`: what Docker's own CLI sends to :class:`ContextCatcher`,
  just enough of the Engine API on a Unix socket to receive a build context;
- :func:`replay_image`: every builder RUN step in a temporary root standing for "/", and the
  runtime stage's files laid out as COPY lays them (:class:`Replay`).
"""

from __future__ import annotations

import fnmatch
import http.server
import io
import itertools
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import dockerfile

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


def build_context(ignore: DockerIgnore) -> set[str]:
    """Relative paths of the files `docker build .` would send."""
    files: set[str] = set()
    for directory, subdirs, names in os.walk(REPO_ROOT):
        rel_dir = Path(directory).relative_to(REPO_ROOT)
        subdirs[:] = [d for d in subdirs if not (rel_dir == Path(".") and d in NEVER_SENT)]
        for name in names:
            rel = (rel_dir / name).as_posix()
            if not ignore.excluded(rel):
                files.add(rel)
    return files


def copy_sources(command: dockerfile.Command) -> list[str]:
    return [src.rstrip("/") or "." for src in command.value[:-1]]


def context_files_under(context: set[str], source: str) -> list[str]:
    source = os.path.normpath(source)
    return sorted(f for f in context if f == source or f.startswith(source + "/"))


def context_sent_by_docker_client(docker: str) -> tuple[set[str] | None, str]:
    """The files ``docker build .`` hands to a fake daemon, and the client's stderr.

    None when the client sent no classic context (one without the classic builder talks
    BuildKit's session protocol instead)."""
    with tempfile.TemporaryDirectory(prefix="docker-", dir="/tmp") as tmp:
        daemon = ContextCatcher(str(Path(tmp) / "docker.sock"))
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
    return daemon.context, result.stderr


class ContextCatcher(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Just enough of the Engine API for `docker build`: answers the ping, keeps the context."""

    daemon_threads = True
    context: set[str] | None = None

    def __init__(self, path: str) -> None:
        super().__init__(path, _EngineHandler)


class _EngineHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ContextCatcher

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
            stage.env[name] = expand(self.reroot(value), stage.env)

    def _do_workdir(self, stage: Stage, command: dockerfile.Command, _: bool) -> None:
        stage.workdir = str(PurePosixPath(stage.workdir, command.value[0]))
        self.host(stage.workdir).mkdir(parents=True, exist_ok=True)

    def _do_copy(self, stage: Stage, command: dockerfile.Command, _: bool) -> None:
        *sources, dest = command.value
        target = self.host(str(PurePosixPath(stage.workdir, dest)))
        origin = flag(command, "from")
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

    @property
    def workdir(self) -> Path:
        """The runtime stage's WORKDIR, where CMD runs."""
        return self.replay.host(self.runtime.workdir)

    def healthcheck_passes(self, env: dict[str, str]) -> bool:
        check = subprocess.run(
            list(self.healthcheck), cwd=self.workdir, env=env, capture_output=True, timeout=30
        )
        return check.returncode == 0


@contextmanager
def replay_image(
    commands: tuple[dockerfile.Command, ...], context: set[str]
) -> Iterator[ReplayedImage]:
    """The image's filesystem, built by the Dockerfile's own steps in a temporary root."""
    starts = [i for i, c in enumerate(commands) if c.cmd == "FROM"] + [len(commands)]
    stages = [list(commands[a:b]) for a, b in itertools.pairwise(starts)]
    with tempfile.TemporaryDirectory(prefix="image-replay-") as tmp:
        root = Path(tmp)
        shims = root / "usr" / "local" / "bin"
        shims.mkdir(parents=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        for name in ("python", "python3"):
            (shims / name).symlink_to(base_python)
        (root / "tmp").mkdir()
        replay = Replay(root, context, base_image_env(root, shims))
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


def base_image_env(root: Path, shims: Path) -> dict[str, str]:
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


def env_of(stage: list[dockerfile.Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for command in stage:
        if command.cmd == "ENV":
            env.update(zip(command.value[::2], command.value[1::2], strict=True))
    return env


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def flag(command: dockerfile.Command, name: str) -> str | None:
    for flag in command.flags:
        key, _, value = flag.removeprefix("--").partition("=")
        if key == name:
            return value
    return None


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    return total
