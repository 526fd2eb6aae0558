"""boot.py's start-up checks in-process: each refusal is one short sentence naming the setting and
its fix (the same checks as a real process are in test_startup_errors.py)."""

from __future__ import annotations

import logging
import shutil
import socket
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cats_dogs_other.api import startup
from cats_dogs_other.api.settings import ConfigError, Settings, load_settings
from cats_dogs_other.api.startup import (
    MAX_SENTENCE,
    ShortTracebacks,
    StartupError,
    check_model_file,
    check_port,
    from_config_error,
    preflight,
)
from cats_dogs_other.loopback import LOOPBACK


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def no_recorded_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "_failure", None)


def test_a_long_sentence_keeps_its_setting_and_its_fix() -> None:
    error = StartupError("MODEL_PATH " + "x\n" * 400 + "point it at a model", setting="MODEL_PATH")
    assert len(error.sentence) == MAX_SENTENCE and "\n" not in error.sentence
    assert error.sentence.startswith("MODEL_PATH x x")
    assert error.sentence.endswith("point it at a model")
    assert " ... " in error.sentence and error.setting == "MODEL_PATH"


def test_a_config_error_names_its_variables_and_the_help() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(oauth2_issuer="https://tenant.test/", oauth2_audience="a", port=70000)
    error = from_config_error(caught.value)
    assert error.setting == "PORT"
    assert error.sentence.endswith("fix PORT (`python boot.py --help` lists every setting)")


def test_a_config_error_without_names_still_says_where_to_look() -> None:
    error = from_config_error(ConfigError("invalid configuration: something"))
    assert error.setting is None
    assert "fix the settings named" in error.sentence


def test_a_busy_port_names_port(busy_port: int) -> None:
    with pytest.raises(StartupError) as caught:
        check_port(LOOPBACK, busy_port)
    assert caught.value.setting == "PORT"
    assert f"PORT {busy_port} is already in use on {LOOPBACK}" in caught.value.sentence


def test_a_host_of_another_machine_names_host() -> None:
    with pytest.raises(StartupError) as caught:
        check_port("192.0.2.1", 8080)  # TEST-NET-1: never an address of this machine
    assert caught.value.setting == "HOST"
    assert "set HOST to an address of this machine" in caught.value.sentence


def test_port_zero_and_a_free_port_pass() -> None:
    check_port(LOOPBACK, 0)
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        free = sock.getsockname()[1]
    check_port(LOOPBACK, free)


def test_a_missing_model_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="does not exist") as caught:
        check_model_file(tmp_path / "nowhere", "MODEL_PATH")
    assert caught.value.setting == "MODEL_PATH"
    assert "unset it to serve the bundled model" in caught.value.sentence


@pytest.mark.parametrize(
    ("name", "content"),
    [("model.keras", b"not a zip at all"), ("model.h5", b"GIF89a\x00\x00 not hdf5")],
)
def test_a_renamed_file_is_not_taken_for_a_model(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(StartupError) as caught:
        check_model_file(path, "MODEL_PATH")
    suffix = path.suffix
    assert f"is not a {suffix} model file (damaged or something else renamed)" in str(caught.value)


def test_a_real_keras_zip_passes_the_file_check(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    check_model_file(path, "MODEL_PATH")


def test_a_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as caught:
        check_model_file(tmp_path, "MODEL_PATH")
    assert caught.value.sentence.startswith(f"MODEL_PATH {tmp_path}: ")


def test_a_broken_metadata_json_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "metadata.json").write_text("{broken")
    with pytest.raises(StartupError) as caught:
        check_model_file(folder, "MODEL_PATH")
    assert caught.value.sentence.startswith("MODEL_PATH: ")


def test_the_model_file_check_hashes_no_model_file(
    tiny_int8_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lifespan hashes the model files (once); the check before it only opens them."""
    from kto.inference import model

    hash_file = model._identified_sha256
    hashed: list[str] = []

    def spy(path: Path) -> tuple[tuple[int, ...], str]:
        hashed.append(path.name)
        return hash_file(path)

    monkeypatch.setattr(model, "_identified_sha256", spy)
    check_model_file(tiny_int8_model, "MODEL_PATH")
    assert hashed == []


def test_preflight_passes_a_good_model_and_warns_of_unshared_state(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=startup.__name__):
        assert preflight(make_settings(port=0, workers=2)) == {}
    [record] = caplog.records
    assert "WORKERS=2 without STATE_URL" in record.getMessage()


def test_one_worker_has_nothing_to_warn_about(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=startup.__name__):
        preflight(make_settings(port=0))
    assert caplog.records == []


def test_a_malformed_model_uri_is_refused_before_mlflow(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(StartupError) as caught:
        preflight(make_settings(port=0, model_uri="s3://bucket/model"))
    assert caught.value.setting == "MODEL_URI"
    assert "is not a supported MLflow URI" in caught.value.sentence


def test_a_model_uri_without_a_tracking_server_names_it(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(StartupError) as caught:
        preflight(make_settings(port=0, model_uri="models:/cats-dogs-other/3"))
    assert caught.value.setting == "MLFLOW_TRACKING_URI"


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, message, None, None)


TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad thing\n'


def test_a_traceback_becomes_its_last_line(no_recorded_failure: None) -> None:
    entry = record(TRACEBACK)
    assert ShortTracebacks().filter(entry)
    assert entry.getMessage() == "ValueError: bad thing (LOG_LEVEL=DEBUG shows the traceback)"


def test_a_traceback_already_reported_is_dropped(no_recorded_failure: None) -> None:
    startup.record_failure(StartupError("MODEL_PATH is broken"))
    assert startup.recorded_failure() is not None
    assert not ShortTracebacks().filter(record(TRACEBACK))


def test_other_messages_and_debug_logs_are_left_alone(
    no_recorded_failure: None, caplog: pytest.LogCaptureFixture
) -> None:
    plain = record("Started server process")
    assert ShortTracebacks().filter(plain) and plain.getMessage() == "Started server process"
    caplog.set_level(logging.DEBUG)  # the root logger's level
    entry = record(TRACEBACK)
    assert ShortTracebacks().filter(entry) and entry.getMessage() == TRACEBACK
