"""Configuration: course names from the environment, and start-up refusals in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cats_dogs_other.api.settings import DEFAULT_MODEL_PATH, ConfigError, Settings, load_settings

GOOD = {"OAUTH2_ISSUER": "https://tenant.eu.auth0.com/", "OAUTH2_AUDIENCE": "https://api"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for name in ("OAUTH2_ISSUER", "OAUTH2_AUDIENCE", "OAUTH2_JWKS_URI", "OAUTH2_ALGORITHMS"):
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def test_defaults_from_the_environment(env) -> None:
    env(**GOOD)
    settings = load_settings()
    assert settings.oauth2_scope == "get::prediction"
    assert settings.oauth2_algorithms == ("RS256",)
    assert settings.oauth2_leeway_s == 60
    assert settings.jwks_cache_ttl_s == 600
    assert settings.jwks_refresh_cooldown_s == 30
    assert settings.jwks_fetch_timeout_s == 5
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert settings.max_batch_files == 32
    assert settings.max_jpeg_scans == 100
    assert settings.queue_max_size == 128  # two full batches of 32 plus 64 single uploads
    assert settings.model_path == DEFAULT_MODEL_PATH
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)  # noqa: S104
    assert settings.log_level == "INFO"
    assert settings.jwks_uri is None  # discovered from the issuer
    assert settings.token_url == "https://tenant.eu.auth0.com/oauth/token"
    assert settings.dpop_mode == "allowed"
    assert settings.dpop_algorithms == ("ES256", "ES384", "PS256", "RS256")
    assert (settings.dpop_iat_window_s, settings.dpop_nonces) == (60, False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (".well-known/jwks.json", "https://tenant.eu.auth0.com/.well-known/jwks.json"),
        ("/keys", "https://tenant.eu.auth0.com/keys"),
        ("https://keys.example/jwks", "https://keys.example/jwks"),
    ],
)
def test_jwks_uri_relative_or_absolute(env, value, expected) -> None:
    env(**GOOD, OAUTH2_JWKS_URI=value)
    assert load_settings().jwks_uri == expected


def test_jpeg_scan_limit_from_the_environment(env) -> None:
    env(**GOOD, MAX_JPEG_SCANS="12")
    assert load_settings().max_jpeg_scans == 12


def test_algorithms_list_from_a_comma_separated_variable(env) -> None:
    env(**GOOD, OAUTH2_ALGORITHMS="RS256, ES256")
    assert load_settings().oauth2_algorithms == ("RS256", "ES256")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({}, "OAUTH2_ISSUER is required; OAUTH2_AUDIENCE is required"),
        ({"OAUTH2_ISSUER": GOOD["OAUTH2_ISSUER"]}, "OAUTH2_AUDIENCE is required"),
        ({**GOOD, "OAUTH2_ISSUER": "http://tenant.eu.auth0.com/"}, "must be an https URL"),
        ({**GOOD, "OAUTH2_JWKS_URI": "http://keys.example/jwks"}, "OAUTH2_JWKS_URI must be"),
        ({**GOOD, "OAUTH2_ALGORITHMS": "HS256"}, "OAUTH2_ALGORITHMS unsupported ['HS256']"),
        ({**GOOD, "OAUTH2_ALGORITHMS": "none"}, "unsupported ['none']"),
        ({**GOOD, "OAUTH2_AUDIENCE": "  "}, "OAUTH2_AUDIENCE must not be empty"),
        ({**GOOD, "LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of"),
        ({**GOOD, "DPOP_MODE": "maybe"}, "DPOP_MODE Input should be 'allowed'"),
        ({**GOOD, "DPOP_ALGORITHMS": "ES256,HS256"}, "DPOP_ALGORITHMS unsupported ['HS256']"),
        ({**GOOD, "DPOP_NONCES": "true"}, "DPOP_NONCES=true needs DPOP_NONCE_SECRET"),
        (
            {**GOOD, "DPOP_NONCE_SECRET": "short"},
            "DPOP_NONCE_SECRET must be at least 32 characters",
        ),
        ({**GOOD, "DPOP_PUBLIC_URL": "http://api.example"}, "DPOP_PUBLIC_URL must be an https"),
        ({**GOOD, "INFERENCE_LANES": "0"}, "INFERENCE_LANES Input should be greater than or"),
    ],
    ids=[
        "nothing",
        "no-audience",
        "http-issuer",
        "http-jwks",
        "hmac",
        "none",
        "blank",
        "level",
        "dpop-mode",
        "dpop-hmac",
        "dpop-nonce-without-secret",
        "dpop-short-secret",
        "dpop-http-url",
        "no-lane",
    ],
)
def test_misconfiguration_is_one_line(env, values, reason) -> None:
    env(**values)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert reason in message


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3", "[::1]"])
def test_plain_http_is_allowed_on_loopback(host) -> None:
    settings = Settings(oauth2_issuer=f"http://{host}:9000/", oauth2_audience="a")
    assert settings.oauth2_issuer.startswith("http://")


@pytest.mark.process
def test_boot_refuses_to_start_with_a_one_line_reason(repo_root) -> None:
    env = {"PATH": "/usr/bin:/bin", "OAUTH2_ISSUER": "http://auth.example.com/"}
    result = subprocess.run(
        [sys.executable, "boot.py"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "OAUTH2_ISSUER must be an https URL" in lines[0]
    assert "OAUTH2_AUDIENCE is required" in lines[0]


def test_several_workers_share_the_cores(env, monkeypatch: pytest.MonkeyPatch) -> None:
    env(**GOOD, WORKERS="2")
    monkeypatch.setattr("kto.inference.cpus.usable_cpus", lambda: 4)
    settings = load_settings()
    assert (settings.decode_threads, settings.tf_intra_op_threads) == (2, 2)
    assert settings.tf_inter_op_threads == 1
    assert (settings.inference_lanes, settings.inference_threads) == (1, 2)  # one lane


def test_one_worker_sizes_its_pools_to_the_usable_cpus_not_the_machine(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod limited to 2 CPUs on a 64-core node (see kto.inference.cpus for the quota)."""
    env(**GOOD)
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("kto.inference.cpus.usable_cpus", lambda: 2)
    settings = load_settings()
    assert (settings.decode_threads, settings.inference_threads) == (2, 2)
    assert settings.inference_lanes == 1
    assert (settings.tf_intra_op_threads, settings.tf_inter_op_threads) == (2, None)


def test_lanes_share_the_cpus_as_intra_op_threads(env, monkeypatch: pytest.MonkeyPatch) -> None:
    env(**GOOD, INFERENCE_LANES="2")
    monkeypatch.setattr("kto.inference.cpus.usable_cpus", lambda: 2)
    settings = load_settings()
    assert (settings.inference_lanes, settings.inference_threads) == (2, 1)
    assert (settings.decode_threads, settings.tf_intra_op_threads) == (2, 2)


def test_explicit_runtime_threads_win_over_the_plan(env) -> None:
    env(**GOOD, DECODE_THREADS="1", INFERENCE_THREADS="3")
    settings = load_settings()
    assert (settings.decode_threads, settings.inference_threads) == (1, 3)


def test_the_inference_backend_is_one_of_four(env) -> None:
    env(**GOOD, INFERENCE_BACKEND="keras")
    assert load_settings().inference_backend == "keras"
    env(**GOOD, INFERENCE_BACKEND="openvino")
    assert load_settings().inference_backend == "openvino"
    env(**GOOD, INFERENCE_BACKEND="tflite")
    match = "INFERENCE_BACKEND Input should be 'auto', 'keras', 'onnx' or 'openvino'"
    with pytest.raises(ConfigError, match=match):
        load_settings()


def test_explicit_thread_settings_win_over_the_worker_share(env) -> None:
    env(**GOOD, WORKERS="2", DECODE_THREADS="3", TF_INTRA_OP_THREADS="5", TF_INTER_OP_THREADS="2")
    settings = load_settings()
    assert (settings.decode_threads, settings.tf_intra_op_threads) == (3, 5)
    assert settings.tf_inter_op_threads == 2
