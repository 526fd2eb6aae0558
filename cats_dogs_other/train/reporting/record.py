"""The run record a report adds to a model folder: a key of ``metrics.json``, keys of
``metadata.json`` (only optional ones the wheel reads, see :mod:`kto.inference.calibration`)
and a section of ``MODEL_CARD.md`` under its own heading, so running a report again replaces
its own section and nothing else. The model files are never touched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD = "MODEL_CARD.md"


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
