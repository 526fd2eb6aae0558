"""Settings for this API when the battery runs it in-process (the tiny model, fast batching)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cats_dogs_other.api.settings import Settings


@pytest.fixture(scope="session")
def api_settings(tiny_model: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"model_path": tiny_model, "decode_threads": 2}
        values.update(batch_max_wait_ms=1.0, **overrides)
        return Settings(**values)

    return make
