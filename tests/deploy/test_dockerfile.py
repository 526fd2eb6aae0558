"""The Dockerfile, checked without a Docker engine.

The fast tests compute the build context the way Docker does (.dockerignore, last match wins)
and check what the image copies and how it runs against the Kubernetes manifests. The slow
tests replay the Dockerfile itself: every builder RUN step in a temporary root standing for
"/", the runtime stage's files laid out as COPY lays them, then the image's CMD is started and
its HEALTHCHECK command must succeed. The replay installs the API's requirements from the
package index (about a minute), which is the price of proving the build steps CI does not
otherwise run. The machinery lives in :mod:`tests.deploy.docker_support`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import pytest

from cats_dogs_other.api.settings import Settings
from cats_dogs_other.core.dev import DEV_AUDIENCE
from cats_dogs_other.loopback import LOOPBACK, Child, free_port
from tests.deploy.docker_support import (
    DockerIgnore,
    ReplayedImage,
    build_context,
    context_files_under,
    context_sent_by_docker_client,
    copy_sources,
    env_of,
    flag,
    replay_image,
    seconds,
)
from tests.deploy.support import REPO_ROOT


@pytest.fixture(scope="module")
def dockerignore() -> DockerIgnore:
    return DockerIgnore((REPO_ROOT / ".dockerignore").read_text())


@pytest.fixture(scope="module")
def context(dockerignore: DockerIgnore) -> set[str]:
    """Relative paths of the files `docker build .` would send."""
    return build_context(dockerignore)


@pytest.fixture(scope="module")
def replayed_image(
    dockerfile_commands: tuple[dockerfile.Command, ...], context: set[str]
) -> Iterator[ReplayedImage]:
    """The image's filesystem, built by the Dockerfile's own steps in a temporary root."""
    with replay_image(dockerfile_commands, context) as image:
        yield image


def test_every_copy_source_is_in_the_build_context(
    dockerfile_commands: tuple[dockerfile.Command, ...], context: set[str]
) -> None:
    copies = [c for c in dockerfile_commands if c.cmd == "COPY" and not flag(c, "from")]
    assert copies, "the Dockerfile copies nothing from the context"
    for command in copies:
        for source in copy_sources(command):
            assert context_files_under(context, source), (
                f"line {command.start_line}: COPY {source} has no file in the build context "
                "(missing from the repository, or excluded by .dockerignore)"
            )


def test_context_is_what_the_docker_client_sends(context: set[str]) -> None:
    """Docker's own CLI computes the context and hands it to a fake daemon on a Unix socket."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI (the client is enough: no engine is used)")
    sent, stderr = context_sent_by_docker_client(docker)
    if sent is None:
        pytest.skip(f"this docker client sent no classic build context: {stderr[-300:]}")
    # The client always sends the Dockerfile and .dockerignore themselves.
    assert sent == context | {"Dockerfile", ".dockerignore"}


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
        "cats_dogs_other/loopback.py",
        "tools/procfs.py",
    ],
)
def test_local_state_and_other_code_stay_out_of_the_context(
    dockerignore: DockerIgnore, path: str
) -> None:
    assert dockerignore.excluded(path)


def test_the_image_gets_the_api_the_default_model_and_the_wheel_sources(
    context: set[str],
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
        assert required in context, f"{required} is not sent to the Docker daemon"


def test_the_image_installs_the_api_requirements_without_the_issuers_authlib(
    dockerfile_commands: tuple[dockerfile.Command, ...],
) -> None:
    """Only the development issuer uses authlib; the serving image must not carry it."""
    runs = " ".join(" ".join(c.value) for c in dockerfile_commands if c.cmd == "RUN")
    assert "-r cats_dogs_other/api/requirements.txt" in runs
    requirements = (REPO_ROOT / "cats_dogs_other/api/requirements.txt").read_text().splitlines()
    names = {line.split("==")[0].strip().lower() for line in requirements if "==" in line}
    assert "fastapi" in names
    assert "authlib" not in names
    assert not [line for line in requirements if line.startswith(("-r", "-c"))]


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
    start_period = seconds(flag(check, "start-period") or "0s")
    startup = api_container["startupProbe"]
    assert start_period >= startup["periodSeconds"] * startup["failureThreshold"] * 0.75, (
        "the HEALTHCHECK start period should cover the model load like the startup probe"
    )


def test_runtime_env_sends_every_write_to_tmp(
    final_stage: list[dockerfile.Command], api_container: dict[str, Any]
) -> None:
    env = env_of(final_stage)
    pod_env = {item["name"]: item.get("value") for item in api_container["env"]}
    for name in ("HOME", "KERAS_HOME", "MODEL_CACHE_DIR"):
        assert env[name].startswith("/tmp"), name
        assert pod_env[name] == env[name], f"{name} differs between the image and the pod"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"


@pytest.mark.slow
def test_replayed_venv_is_consistent_and_imports_the_app(replayed_image: ReplayedImage) -> None:
    image = replayed_image
    env, cwd = image.runtime.env, image.workdir
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
    env, cwd = image.runtime.env, image.workdir
    keras_only = tmp_path / "keras-only"
    keras_only.mkdir()
    for name in ("model.keras", "metadata.json"):
        shutil.copy2(cwd / "cats_dogs_other" / "model" / name, keras_only / name)
    code = f"""
import importlib.util, sys
from pathlib import Path
assert not [m for m in ("tensorflow", "keras") if importlib.util.find_spec(m)], "TF installed"
assert not importlib.util.find_spec("authlib"), "authlib (the development issuer's) installed"
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
    replayed_image: ReplayedImage, deployment: dict[str, Any], tmp_path: Path
) -> None:
    image = replayed_image
    port = free_port()
    env = {
        **image.runtime.env,
        "HOST": LOOPBACK,
        "PORT": str(port),
        # Nothing listens there: the API must still start and answer /health (keys come later).
        "OAUTH2_ISSUER": f"http://{LOOPBACK}:{free_port()}/",
        "OAUTH2_AUDIENCE": DEV_AUDIENCE,
    }
    server = Child(
        "image", list(image.cmd), env=env, cwd=image.workdir, log_path=tmp_path / "image.log"
    ).start()
    try:
        server.wait_until(
            lambda: image.healthcheck_passes(env),
            "its HEALTHCHECK passed",
            timeout_s=180,
            interval_s=1,
        )
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(grace)
        # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean stop too.
        assert code in (0, -signal.SIGTERM), server.tail()
        assert time.monotonic() - started < grace
    finally:
        server.stop(grace_s=5)
