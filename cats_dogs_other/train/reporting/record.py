"""A report's record in a model folder: a key of metrics.json, optional keys of metadata.json
and a card section under its own heading, so running it again replaces only its own part."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

CARD = "MODEL_CARD.md"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(map(str, row)) + " |" for row in rows)])


def update_json(path: Path, values: dict[str, Any]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(values)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def put_card_section(model_dir: Path, section: str, replaces: str | None = None) -> None:
    """Replace the card's section with ``section``'s heading (its first line), or append it.
    ``replaces``: the start of a heading line, for a section whose heading says its verdict."""
    path = Path(model_dir) / CARD
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    heading = section.split("\n", 1)[0]
    if replaces is not None:
        found_line = next((ln for ln in text.splitlines() if ln.startswith(replaces)), None)
        heading = found_line or heading
    before, found, after = text.partition(heading + "\n")
    if not found:
        text = text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    else:
        rest = after.split("\n## ", 1)
        tail = "\n\n## " + rest[1] if len(rest) == 2 else "\n"
        text = before + section.strip("\n") + tail
    path.write_text(text, encoding="utf-8")
