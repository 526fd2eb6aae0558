"""What the API and the issuer answer reaches the terminal cut short and with its controls
escaped, in errors and in normal output; driven over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kto.client.cli import EXIT_AUTH, EXIT_FAILED_IMAGE, EXIT_OK
from kto.client.text import BIDI_CONTROLS, DETAIL_LIMIT, escape_controls, from_server, shorten

TOKEN = (200, {"access_token": "t", "token_type": "Bearer", "expires_in": 60})
# Sets the window title, rings the bell, clears the screen, rewrites the line, reverses text,
# and a C1 CSI (0x9b) that some terminals take as ESC [.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\rOK \u202eevil\u2066\x85\x9b31m\x00\x7f end"
RAW = ("\x1b", "\x07", "\r", "\u202e", "\u2066", "\x85", "\x9b", "\x00", "\x7f")
BIG = 1 << 20  # one MiB of detail stands for the 16 MiB of the attack


@pytest.fixture
def classify(run, loopback, images):
    """Runs the command against ``loopback``; returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        urls = ["--token-url", loopback.url + "/oauth/token", "--api-url", loopback.url]
        code, out, err, _ = run(*urls, *args, *map(str, images("a.png")), network=True)
        return code, out, err

    return invoke


def assert_no_raw_controls(text: str) -> None:
    assert not [c for c in RAW if c in text], repr(text[:200])


def test_an_api_error_detail_is_cut_at_300_characters(classify, loopback) -> None:
    loopback.answers["/oauth/token"] = TOKEN
    loopback.answers["/upload"] = (422, {"detail": "x" * BIG})
    code, out, _ = classify("--format", "json")

    (result,) = json.loads(out)
    assert code == EXIT_FAILED_IMAGE and result["status"] == 422
    assert result["error"] == "x" * DETAIL_LIMIT + f"... ({BIG - DETAIL_LIMIT} more characters)"


def test_a_token_error_description_is_cut_at_300_characters(classify, loopback) -> None:
    loopback.answers["/oauth/token"] = (401, {"error_description": "y" * BIG})
    code, _, err = classify()

    assert code == EXIT_AUTH and len(err.splitlines()) == 1
    assert "y" * DETAIL_LIMIT + "... (" in err and len(err) < 2 * DETAIL_LIMIT + 200


def test_controls_in_an_api_error_are_escaped_in_the_table(classify, loopback) -> None:
    loopback.answers["/oauth/token"] = TOKEN
    loopback.answers["/upload"] = (415, {"detail": HOSTILE})
    code, out, _ = classify()

    assert code == EXIT_FAILED_IMAGE and len(out.splitlines()) == 2
    assert_no_raw_controls(out)
    assert (
        "415: \\x1b]0;pwned\\x07\\x1b[2J\\rOK \\u202eevil\\u2066\\x85\\x9b31m\\x00\\x7f end" in out
    )


def test_controls_in_a_prediction_are_escaped_in_the_table(classify, loopback) -> None:
    loopback.answers["/oauth/token"] = TOKEN
    loopback.answers["/upload"] = (200, {"prediction": "Cat" + HOSTILE, "values": [1.0, 0, 0]})
    code, out, _ = classify()

    assert code == EXIT_OK
    assert_no_raw_controls(out)
    assert out.splitlines()[1].split()[1] == "Cat\\x1b]0;pwned\\x07\\x1b[2J\\rOK"


def test_json_output_is_ascii_with_the_answer_kept(classify, loopback) -> None:
    loopback.answers["/oauth/token"] = TOKEN
    loopback.answers["/upload"] = (200, {"prediction": HOSTILE, "values": [1.0, 0, 0]})
    code, out, _ = classify("--format", "json")

    assert code == EXIT_OK and out.isascii()
    assert_no_raw_controls(out)
    assert json.loads(out)[0]["prediction"] == HOSTILE, "JSON escapes; the value is unchanged"


def test_controls_in_a_token_error_are_escaped_on_one_line(classify, loopback) -> None:
    loopback.answers["/oauth/token"] = (401, {"error_description": "no\r\nforged: " + HOSTILE})
    code, _, err = classify()

    assert code == EXIT_AUTH and len(err.splitlines()) == 1
    assert_no_raw_controls(err)
    assert "no\\r\\nforged: \\x1b]0;pwned" in err


@pytest.mark.process
def test_the_installed_command_writes_no_raw_control_byte(loopback, tmp_path: Path) -> None:
    loopback.answers["/oauth/token"] = TOKEN
    loopback.answers["/upload"] = (415, {"detail": HOSTILE})
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDO_")}
    env.update(CDO_CLIENT_ID="c", CDO_CLIENT_SECRET="s", CDO_AUDIENCE="a")
    command = Path(sys.executable).with_name("cats-dogs-other")
    urls = ["--token-url", loopback.url + "/oauth/token", "--api-url", loopback.url]
    result = subprocess.run(
        [str(command), "classify", *urls, str(image)], env=env, capture_output=True, timeout=60
    )

    assert result.returncode == EXIT_FAILED_IMAGE, result.stderr
    printed = result.stdout + result.stderr
    assert b"pwned" in printed
    assert len(result.stdout.splitlines()) == 2 and result.stderr == b""
    for raw in RAW:
        assert raw.encode() not in printed, raw


@pytest.mark.parametrize(
    "code", [*range(0x20), 0x7F, *range(0x80, 0xA0), *BIDI_CONTROLS], ids=lambda c: f"U+{c:04X}"
)
def test_every_c0_c1_and_bidi_control_is_escaped(code: int) -> None:
    shown = escape_controls(f"a{chr(code)}b")
    assert shown.isascii() and shown.isprintable() and shown.startswith("a\\") and len(shown) > 3


def test_printable_text_is_left_alone() -> None:
    text = "Chat, chien, autre: café 猫 🐶 \\x1b (already escaped)"
    assert escape_controls(text) == text


def test_shorten_and_from_server() -> None:
    assert shorten("abc", 3) == "abc"
    assert shorten("abcdef", 3) == "abc... (3 more characters)"
    assert from_server("\x1b" * 400) == "\\x1b" * DETAIL_LIMIT + "... (100 more characters)"
