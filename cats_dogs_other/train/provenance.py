"""Where a run's inputs come from, as their README files say it: quoted in the model card
rather than restated by hand."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TRAIN_COMMAND = "python -m cats_dogs_other.train"


@dataclass(frozen=True)
class Provenance:
    command: str = f"{TRAIN_COMMAND} ..."  # the command line that reproduces the run
    data_sources: dict[str, str | None] = field(default_factory=dict)  # name -> README's origin
    backbone: str | None = None


def readme_paragraph(directory: Path | None, *prefixes: str) -> str | None:
    """The paragraph of ``directory/README.md`` starting with the first of ``prefixes`` found,
    up to any "Checked:" sentence (claims the run measures itself)."""
    if directory is None or not (readme := Path(directory) / "README.md").is_file():
        return None
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", readme.read_text("utf-8"))]
    found = (t.removeprefix(p) for p in prefixes for t in paragraphs if t.startswith(p))
    return next((text.split(" Checked:")[0].strip() for text in found), None)


def describe_run(data: Sequence[Path], weights: Path | None, argv: Sequence[str]) -> Provenance:
    return Provenance(
        command=shlex.join([*shlex.split(TRAIN_COMMAND), *argv]),
        data_sources={
            d.resolve().name: readme_paragraph(d, "Source:", "Provenance:", "Licence:")
            for d in data
        },
        backbone=readme_paragraph(weights.parent, "Provenance:") if weights else None,
    )
