"""One ``--help`` layout for every command: the description wrapped, the epilog (the list of
environment variables the command reads) kept line by line."""

from __future__ import annotations

import argparse


class EnvironmentHelpFormatter(argparse.HelpFormatter):
    """argparse's default formatter, except that a multi-line epilog is printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
