"""The comparison as Markdown: one summary row per validator, then every case."""

from __future__ import annotations

from collections.abc import Sequence

from compare.cases import CASES, Case
from compare.run import TargetResult


def summary_table(results: Sequence[TargetResult], cases: tuple[Case, ...] = CASES) -> str:
    lines = [
        "| validator | cases passed | 5xx seen | failed cases |",
        "|---|---:|---:|---|",
    ]
    for r in results:
        failed = r.failed(cases)
        passed = len(cases) - len(failed)
        names = ", ".join(f"`{name}`" for name in failed) or "none"
        score = f"{passed}/{len(cases)}"
        lines.append(f"| {r.name} ({r.library}) | {score} | {r.unexpected_5xx(cases)} | {names} |")
    return "\n".join(lines) + "\n"


def case_table(results: Sequence[TargetResult], cases: tuple[Case, ...] = CASES) -> str:
    """Each case, what it expects, and each validator's answers (pass or FAIL)."""
    head = "| case | expects | " + " | ".join(r.name for r in results) + " |"
    lines = [head, "|---|---|" + "---|" * len(results)]
    for case in cases:
        cells = []
        for r in results:
            outcome = r.outcomes[case.id]
            shown = sorted({str(s) if s is not None else "none" for s in outcome.statuses})
            answer = "/".join(shown) or "-"
            cells.append(f"{'pass' if outcome.passed else 'FAIL'} {answer}")
        expects = "/".join(str(s) for s in sorted(case.expect)) if len(case.expect) < 5 else "4xx"
        lines.append(f"| `{case.id}`: {case.title} | {expects} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
