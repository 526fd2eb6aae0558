"""The checks; each takes a :class:`Context` and fills a :class:`CheckResult`."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reliability.report import CheckResult


@dataclass(frozen=True)
class Context:
    """What every check needs: the model to serve and how hard to push (``--quick`` or not)."""

    model_path: Path
    quick: bool

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full


Check = Callable[[Context, CheckResult], None]


def registry() -> dict[str, tuple[str, Check]]:
    """Check name -> (title, function), in the order ``python -m reliability`` runs them."""
    from reliability.checks import bombs, fuzz, hostile, keys, replicas, shutdown, soak

    return {
        "fuzz": (fuzz.TITLE, fuzz.run),
        "soak": (soak.TITLE, soak.run),
        "shutdown": (shutdown.TITLE, shutdown.run),
        "keys": (keys.TITLE, keys.run),
        "hostile": (hostile.TITLE, hostile.run),
        "bombs": (bombs.TITLE, bombs.run),
        "replicas": (replicas.TITLE, replicas.run),
    }
