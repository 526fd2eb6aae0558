"""Results as JSON (for scripts: one list, one object per file) or as a table (for people).

Both escape the controls an API answer may hold: JSON as ``\\u001b`` (ASCII-only output), the
table as ``\\x1b`` (:func:`kto.client.text.escape_controls`), so no answer drives the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kto.client.api import Result
from kto.client.text import escape_controls


def render_json(results: Sequence[Result]) -> str:
    return json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=True) + "\n"


def render_table(results: Sequence[Result]) -> str:
    rows = [("FILE", "PREDICTION", "CONFIDENCE", "STATUS")]
    for r in results:
        values = r.answer.get("values")
        numbers = (
            [v for v in values if isinstance(v, int | float)] if isinstance(values, list) else []
        )
        confidence = f"{max(numbers):.3f}" if r.ok and numbers else ""
        status = "ok" if r.ok else f"{r.status or 'error'}: {r.error}"
        prediction = str(r.answer.get("prediction", "")) if r.ok else ""
        name, prediction, status = (escape_controls(c) for c in (r.file, prediction, status))
        rows.append((name, prediction, confidence, status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    ]
    return "\n".join(lines) + "\n"
