"""Debian services a test needs (redis-server, haproxy, promtool): skipped when absent, except
under ``CI=true``, where ``make services`` must have installed them and a skip would hide that."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from cats_dogs_other.replicas import INSTALL_HINT, ServiceMissingError, require


def skip_unless_ci(message: str) -> NoReturn:
    """Skip with ``message``, or fail with it under ``CI=true``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (a skip is a failure under CI=true)")
    pytest.skip(message)


def require_services() -> None:
    """Everything the multi-replica stack runs (redis-server, haproxy), or skip / fail."""
    missing = []
    for binary in ("redis-server", "haproxy"):
        try:
            require(binary)
        except ServiceMissingError:
            missing.append(binary)
    if missing:
        skip_unless_ci(f"{', '.join(missing)} not installed; {INSTALL_HINT}")
