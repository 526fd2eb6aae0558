"""Proportions with their uncertainty: every figure of the model card carries n and a 95% CI."""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval: unlike the normal approximation it stays inside [0, 1] and is
    honest at 100% on small n (0 of 12 mistakes is not "certainly perfect")."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, n: int) -> dict[str, Any]:
    """``{"value", "k", "n", "ci95"}``; value and interval are None when there is nothing."""
    ci = wilson_interval(successes, n)
    return {
        "value": round(successes / n, 4) if n else None,
        "k": int(successes),
        "n": int(n),
        "ci95": [round(ci[0], 4), round(ci[1], 4)] if ci else None,
    }


def format_proportion(p: dict[str, Any]) -> str:
    """``97.5% (39/40, 95% CI 87.1-99.6%)``, as every figure of the card is written."""
    if not p or not p.get("n"):
        return "n/a (n=0)"
    low, high = p["ci95"]
    return f"{p['value']:.1%} ({p['k']}/{p['n']}, 95% CI {low:.1%}-{high:.1%})"
