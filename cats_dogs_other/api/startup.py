"""Start-up checks of ``boot.py``: everything that can be found wrong before serving.

Each failure is a :class:`StartupError` whose message is one sentence naming the setting and
its fix. ``boot.py`` runs :func:`preflight` before uvicorn, so a bad setting, a missing or
unreadable model, a bad ``MODEL_URI``, an unreachable MLflow server or a busy port stops the
process at once, in the parent, instead of in every worker (which uvicorn would restart).
A failure that only the model load itself can find (a corrupt file) is raised by the lifespan
as a StartupError too and recorded here for ``boot.py`` to report the same way.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import zipfile
from pathlib import Path

from cats_dogs_other.api.settings import ConfigError, Settings

TRAIN_HINT = "a model directory written by `python -m cats_dogs_other.train`"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# MLflow's defaults retry for minutes; a start-up check should answer in seconds.
MLFLOW_START_UP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}

logger = logging.getLogger(__name__)

_failure: StartupError | None = None


MAX_SENTENCE = 300


class StartupError(Exception):
    """The API cannot start; the message is one sentence with the setting and the fix.

    At most :data:`MAX_SENTENCE` characters, whatever a file or a library put in it: the middle
    is cut, so the setting (first) and the fix (last) stay.
    """

    def __init__(self, sentence: str, *, setting: str | None = None) -> None:
        sentence = " ".join(sentence.split())  # third-party messages may span lines
        if len(sentence) > MAX_SENTENCE:
            head = MAX_SENTENCE * 2 // 3
            tail = MAX_SENTENCE - head - len(" ... ")
            sentence = f"{sentence[:head]} ... {sentence[-tail:]}"
        super().__init__(sentence)
        self.sentence = sentence
        self.setting = setting


def record_failure(error: StartupError) -> None:
    """Remember the failure found in the lifespan, for ``boot.py`` (same process)."""
    global _failure
    _failure = error


def recorded_failure() -> StartupError | None:
    return _failure


def from_config_error(exc: ConfigError) -> StartupError:
    names = ", ".join(exc.names) or "the settings named"
    return StartupError(
        f"{exc}; fix {names} (`python boot.py --help` lists every setting)",
        setting=exc.names[0] if exc.names else None,
    )


def preflight(settings: Settings) -> dict[str, str]:
    """Check what can be checked before serving; return the environment the workers need
    (``MODEL_URI`` resolved once into ``MODEL_PATH``)."""
    check_port(settings.host, settings.port)
    warn_unshared_state(settings)
    if settings.model_uri:
        path = resolve_model_uri(settings)
        check_model_file(path, "MODEL_URI")
        return {"MODEL_PATH": str(path), "MODEL_URI": ""}
    check_model_file(settings.model_path, "MODEL_PATH")
    return {}


def warn_unshared_state(settings: Settings) -> None:
    """Several workers without STATE_URL: DPoP still works, each worker with its own replay
    record (RATE_LIMIT would be multiplied, and is refused by the settings instead)."""
    if settings.workers > 1 and settings.state_url is None and settings.dpop_mode != "disabled":
        logger.warning(
            "WORKERS=%d without STATE_URL: each worker keeps its own DPoP replay record, so a "
            "captured proof could be replayed once per worker within its iat window; set "
            "STATE_URL=redis://... to share one",
            settings.workers,
            extra={"event": "unshared_state"},
        )


def check_port(host: str, port: int) -> None:
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"PORT {port} is already in use on {host}: stop the other server or set PORT "
                "to a free port",
                setting="PORT",
            ) from None
        if exc.errno == errno.EACCES:
            raise StartupError(
                f"cannot listen on {host}:{port} (permission denied): set PORT above 1023",
                setting="PORT",
            ) from None
        raise StartupError(
            f"cannot listen on HOST {host!r} port {port} ({exc.strerror or exc}): set HOST to an "
            "address of this machine, e.g. 0.0.0.0 or 127.0.0.1",
            setting="HOST",
        ) from None


def check_model_file(path: Path, setting: str) -> None:
    """The model exists, can be read, looks like its format and has valid metadata."""
    from kto.inference.errors import ModelLoadError
    from kto.inference.metadata import METADATA_FILENAME, ModelMetadata
    from kto.inference.model import INT8_FILENAME, resolve_model

    fix = f"point {setting} at {TRAIN_HINT}, or unset it to serve the bundled model"
    if not Path(path).exists():
        raise StartupError(f"{setting} {path} does not exist: {fix}", setting=setting)
    try:
        # f32: whether a folder serves its model.int8.onnx takes hashing its files, which the
        # lifespan does once; here that file is only opened, beside the float32 one.
        _, model_file = resolve_model(path, precision="f32")  # a folder may hold only model.onnx
        head = _head(model_file)
        if (Path(path) / INT8_FILENAME).is_file():
            _head(Path(path) / INT8_FILENAME)
    except ModelLoadError as exc:
        raise StartupError(f"{setting} {path}: {exc}: {fix}", setting=setting) from None
    except OSError as exc:
        raise StartupError(
            f"{setting} {path} cannot be read ({exc.strerror or exc}): make it readable by this "
            f"user, or {fix}",
            setting=setting,
        ) from None
    suffix = model_file.suffix.lower()
    if (suffix == ".keras" and not zipfile.is_zipfile(model_file)) or (
        suffix in (".h5", ".hdf5") and head != HDF5_SIGNATURE
    ):
        raise StartupError(
            f"{setting} {model_file} is not a {suffix} model file (damaged or something else "
            f"renamed): {fix}",
            setting=setting,
        )
    metadata = model_file.parent / METADATA_FILENAME
    if metadata.is_file():
        try:
            ModelMetadata.read(metadata)
        except ModelLoadError as exc:
            raise StartupError(f"{setting}: {exc}: {fix}", setting=setting) from None


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(8)


def resolve_model_uri(settings: Settings) -> Path:
    """Download (or reuse) the MLflow model once, here, before any worker starts."""
    from cats_dogs_other.api import model_source

    uri = settings.model_uri or ""
    try:
        model_source.parse_model_uri(uri)  # before MLflow is touched: nothing is written
    except model_source.ModelSourceError as exc:
        raise StartupError(f"{exc}", setting="MODEL_URI") from None
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not tracking_uri:
        # MLflow would fall back to a local ./mlflow.db and create it.
        raise StartupError(
            "MODEL_URI needs MLFLOW_TRACKING_URI: set it to your MLflow tracking server, e.g. "
            "http://mlflow:5000, or unset MODEL_URI and use MODEL_PATH",
            setting="MLFLOW_TRACKING_URI",
        )
    for name, value in MLFLOW_START_UP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        return model_source.resolve_model_uri(
            uri, settings.model_cache_dir, tracking_uri=tracking_uri
        )
    except model_source.ModelSourceError as exc:
        raise StartupError(
            f"{exc}; check MODEL_URI and MLFLOW_TRACKING_URI",
            setting="MLFLOW_TRACKING_URI",
        ) from None


class ShortTracebacks(logging.Filter):
    """Below DEBUG, a start-up failure's traceback (which uvicorn logs as a message) becomes
    its last line, or disappears when the lifespan already logged it as a StartupError."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        if not message.startswith("Traceback (most recent call last)"):
            return True
        if _failure is not None:
            return False
        last = message.strip().splitlines()[-1]
        record.msg, record.args = f"{last} (LOG_LEVEL=DEBUG shows the traceback)", None
        return True
