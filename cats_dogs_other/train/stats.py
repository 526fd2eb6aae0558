"""Proportions with their uncertainty: every figure of the model card carries n and a 95% CI."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n``; value and interval None when ``n`` is 0."""

    value: float | None
    k: int
    n: int
    ci95: list[float] | None

    def __str__(self) -> str:
        if not self.n or self.ci95 is None:
            return "n/a (n=0)"
        return f"{self.value:.1%} ({self.k}/{self.n}, 95% CI {self.ci95[0]:.1%}-{self.ci95[1]:.1%})"


def proportion(successes: int, n: int, z: float = Z95) -> Proportion:
    """With the Wilson score interval: unlike the normal approximation it stays inside [0, 1] and
    is honest at 100% on small n (0 of 12 mistakes is not "certainly perfect")."""
    if n <= 0:
        return Proportion(None, int(successes), int(n), None)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    ci95 = [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]
    return Proportion(round(successes / n, 4), int(successes), int(n), ci95)
