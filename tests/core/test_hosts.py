"""The one loopback rule: where plain http is acceptable, and where a wildcard bind is dialled."""

from __future__ import annotations

import pytest

from cats_dogs_other.core.hosts import LOOPBACK, connect_host, is_loopback, is_secure_url


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),  # noqa: S104 - a host name under test, not a bind
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("localhost.example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("url", "secure"),
    [
        ("https://tenant.eu.auth0.com/", True),
        ("http://127.0.0.1:9000/", True),
        ("http://localhost:9000/jwks", True),
        ("http://[::1]:9000/", True),
        ("http://tenant.eu.auth0.com/", False),
        ("http://127.0.0.1.example.com/", False),
        ("ftp://127.0.0.1/", False),
        ("https:///no-host", False),
        ("not a url", False),
    ],
)
def test_is_secure_url(url: str, secure: bool) -> None:
    assert is_secure_url(url) is secure


def test_a_wildcard_bind_is_dialled_on_loopback() -> None:
    for wildcard in ("0.0.0.0", "::", ""):  # noqa: S104 - bind addresses under test
        assert connect_host(wildcard) == LOOPBACK
    assert connect_host("192.168.1.5") == "192.168.1.5"
