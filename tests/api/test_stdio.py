"""stdio.capture in a real process: raw writes to descriptors 1 and 2 (as TensorFlow's C++
runtime makes them), prints and warnings all reach stdout as JSON; stderr keeps one sentence."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cats_dogs_other.api.stdio import as_json_line

CHILD = textwrap.dedent(
    """
    import json, logging, os, sys, warnings
    from cats_dogs_other.api.stdio import capture

    with capture() as stderr:
        logging.basicConfig(stream=sys.stdout, format="%(message)s")
        logging.captureWarnings(True)
        os.write(2, b"I0000 cpu_feature_guard.cc:227] a C++ log line\\n")
        os.write(1, b"raw bytes on fd 1\\n\\n")
        print("a library's print")
        print(json.dumps({"level": "INFO", "message": "already JSON"}))
        warnings.warn("a deprecation", UserWarning, stacklevel=1)
        stderr.write("the one sentence\\n")
    """
)


@pytest.mark.process
def test_every_stdout_line_is_json_and_stderr_keeps_the_sentence(repo_root: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == "the one sentence\n"
    records = [json.loads(line) for line in completed.stdout.splitlines()]
    by_message = {r["message"]: r for r in records}
    assert by_message["I0000 cpu_feature_guard.cc:227] a C++ log line"]["logger"] == "stderr"
    assert by_message["raw bytes on fd 1"]["logger"] == "stdout"
    assert by_message["a library's print"]["level"] == "INFO"
    assert by_message["already JSON"] == {"level": "INFO", "message": "already JSON"}
    assert any("a deprecation" in r["message"] for r in records)
    assert len(records) == 5  # the blank line is dropped


def test_json_arrays_and_broken_json_are_wrapped() -> None:
    assert json.loads(as_json_line("[1, 2]", "stdout"))["message"] == "[1, 2]"
    assert json.loads(as_json_line('{"unterminated', "stderr"))["level"] == "WARNING"
