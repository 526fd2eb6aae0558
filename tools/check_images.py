"""Run the wheel's structure walk and decode over folders of real images; print the refusals.

Real photos must not pay for the hostile-input bounds: every refusal this prints is either a
broken file or a bound set too tight. Prints one line per refused file and a count per reason.

    python -m tools.check_images ../shared/datasets [more folders or files...]
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Iterator
from pathlib import Path

from kto.inference import InvalidImageError, check_structure, decode_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


def images_under(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        else:
            for found in sorted(path.rglob("*")):
                if found.is_file() and found.suffix.lower() in IMAGE_SUFFIXES:
                    yield found


def check(path: Path, size: tuple[int, int]) -> str:
    """``ok`` or the wheel's reason code for refusing ``path``."""
    data = path.read_bytes()
    try:
        check_structure(data)
        decode_image(data, size=size)
    except InvalidImageError as exc:
        return exc.reason
    return "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths", nargs="+", type=Path, help="folders (searched recursively) or files"
    )
    parser.add_argument("--size", type=int, default=224, help="decode size, as the API (224)")
    args = parser.parse_args(argv)
    counts: collections.Counter[str] = collections.Counter()
    formats: collections.Counter[str] = collections.Counter()
    for path in images_under(args.paths):
        outcome = check(path, (args.size, args.size))
        counts[outcome] += 1
        formats[path.suffix.lower()] += 1
        if outcome != "ok":
            print(f"refused ({outcome}): {path}")
    total = sum(counts.values())
    refused = total - counts["ok"]
    by_suffix = ", ".join(f"{n} {suffix}" for suffix, n in sorted(formats.items()))
    print(f"{total} images ({by_suffix}): {counts['ok']} decoded, {refused} refused")
    for reason, n in sorted(counts.items()):
        if reason != "ok":
            print(f"  {reason}: {n}")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
