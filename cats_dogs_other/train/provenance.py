"""Where a run's inputs come from, as their README files state it: printed in the model card.

A source or weights folder documents itself in ``README.md`` paragraphs starting "Source:",
"Provenance:" or "Licence:"; the card quotes them rather than restating them by hand.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TRAIN_COMMAND = "python -m cats_dogs_other.train"


@dataclass(frozen=True)
class Provenance:
    command: str = f"{TRAIN_COMMAND} ..."
    """The command line that reproduces the run."""
    data_sources: dict[str, str | None] = field(default_factory=dict)
    """Source name -> what its README says of its origin (None: it says nothing)."""
    backbone: str | None = None
    """What the weights' README says of their origin."""


def readme_paragraph(directory: Path | None, prefix: str) -> str | None:
    """The paragraph of ``directory/README.md`` that starts with ``prefix`` (e.g. "Source:"),
    without the prefix and up to any "Checked:" sentence (claims we measure ourselves)."""
    if directory is None:
        return None
    readme = Path(directory) / "README.md"
    if not readme.is_file():
        return None
    for para in re.split(r"\n\s*\n", readme.read_text(encoding="utf-8")):
        text = " ".join(para.split())
        if text.startswith(prefix):
            return text[len(prefix) :].split(" Checked:")[0].strip()
    return None


def describe_run(data: Sequence[Path], weights: Path | None, argv: Sequence[str]) -> Provenance:
    return Provenance(
        command=shlex.join([*shlex.split(TRAIN_COMMAND), *argv]),
        data_sources={
            d.resolve().name: readme_paragraph(d, "Source:")
            or readme_paragraph(d, "Provenance:")
            or readme_paragraph(d, "Licence:")
            for d in data
        },
        backbone=readme_paragraph(weights.parent, "Provenance:") if weights else None,
    )
