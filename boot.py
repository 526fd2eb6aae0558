"""Start the API: ``python boot.py`` (uvicorn on HOST:PORT, WORKERS processes).

Settings, the model and the port are checked here first (``cats_dogs_other.api.startup``), so a
misconfigured server stops at once: exit status non-zero, one sentence on stderr naming the
setting and its fix, the same sentence as one JSON record on stdout, and no traceback unless
LOG_LEVEL=DEBUG. Every line on stdout is JSON, third-party output included.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import logging.config
import os
import signal
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from cats_dogs_other.api.settings import Settings

EXIT_CONFIG = 2
EXIT_STARTUP = 1

logger = logging.getLogger("cats_dogs_other.boot")


def _return_freed_memory() -> None:
    """Buffers of 1 MiB+ (decoded images) go to mmap, so freeing them returns memory (glibc)."""
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))  # for spawned workers
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # -3 = M_MMAP_THRESHOLD


def environment_help() -> str:
    """Every setting the API reads, from the settings class itself (one source of defaults)."""
    from cats_dogs_other.api.settings import Settings

    lines = ["environment variables (read once, at start-up):"]
    for name, field in Settings.model_fields.items():
        default = "required" if field.is_required() else _shown_default(field)
        about = f" - {field.description}" if field.description else ""
        lines.append(f"  {name.upper():<26} {default}{about}")
    lines += [
        "  MLFLOW_TRACKING_URI        the MLflow server MODEL_URI is resolved against",
        "",
        "docs/settings.md explains each one. Exit status: 0 after a clean shutdown, 2 for invalid",
        "settings, 1 for any other start-up failure (one sentence on stderr says which).",
    ]
    return "\n".join(lines)


def _shown_default(field: object) -> str:
    default = getattr(field, "default", None)
    if getattr(field, "default_factory", None) is not None:
        return "default: computed at start-up"
    if default is None:
        return "default: unset"
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    return f"default: {default}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from cats_dogs_other.core.cli_help import EnvironmentHelpFormatter

    parser = argparse.ArgumentParser(
        prog="python boot.py",
        description="Serve the cats-dogs-other API (uvicorn on HOST:PORT). Takes no options: "
        "every setting is an environment variable.",
        epilog=environment_help(),
        formatter_class=EnvironmentHelpFormatter,
    )
    return parser.parse_args(argv)


def _log_level() -> str:
    level = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
    return level if level in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"} else "INFO"


def _fail(error: BaseException, sentence: str, stderr: TextIO, code: int, log: bool = True) -> int:
    if log:  # a failure of the lifespan was logged where it happened
        debug = _log_level() == "DEBUG"
        logger.error(sentence, exc_info=error if debug else None, extra={"event": "startup_failed"})
    stderr.write(f"cats-dogs-other API not started: {sentence}\n")
    stderr.flush()
    return code


def serve(stderr: TextIO) -> int:
    from cats_dogs_other.api.middleware.access_log import logging_config

    logging.config.dictConfig(logging_config(_log_level()))
    logging.captureWarnings(True)  # warnings become JSON records, not stray stderr lines

    from cats_dogs_other.api import startup
    from cats_dogs_other.api.settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(exc, startup.from_config_error(exc).sentence, stderr, EXIT_CONFIG)
    try:
        os.environ.update(startup.preflight(settings))
        _run_uvicorn(settings)
    except startup.StartupError as exc:
        return _fail(exc, exc.sentence, stderr, EXIT_STARTUP)
    except SystemExit as exc:  # uvicorn exits this way when the lifespan fails
        if not exc.code:
            return 0
        failure = startup.recorded_failure()
        sentence = failure.sentence if failure else "the API stopped during start-up: see the log"
        return _fail(failure or exc, sentence, stderr, EXIT_STARTUP, log=failure is None)
    except Exception as exc:
        sentence = f"unexpected start-up failure ({type(exc).__name__}: {exc}); LOG_LEVEL=DEBUG "
        return _fail(exc, sentence + "logs the traceback", stderr, EXIT_STARTUP)
    return 0


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    from cats_dogs_other.api.middleware.access_log import logging_config
    from cats_dogs_other.api.middleware.http_protocols import default_protocol

    uvicorn.run(
        "cats_dogs_other.api.app:create_app",
        factory=True,
        http=default_protocol(),
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_config(settings.log_level),
        access_log=False,  # our middleware writes one JSON line per request instead
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )


class _Signalled(BaseException):
    """uvicorn re-raises the stopping signal after its graceful shutdown; caught here first,
    so the log pumps flush the last lines before the process ends by that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _defer_signal(signum: int, frame: object) -> None:
    raise _Signalled(signum)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)  # --help prints and exits before anything starts
    _return_freed_memory()
    from cats_dogs_other.api.stdio import capture

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _defer_signal)  # what uvicorn restores, then raises
    try:
        with capture() as stderr:
            return serve(stderr)
    except _Signalled as stopped:  # exit status tells the truth: ended by that signal
        signal.signal(stopped.signum, signal.SIG_DFL)
        signal.raise_signal(stopped.signum)
        raise


if __name__ == "__main__":
    sys.exit(main())
