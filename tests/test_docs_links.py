"""Every relative link in the README, the docs/ pages and the other READMEs a user reads names a
file that exists, and every
``#fragment`` names a heading of the page it points at (GitHub's anchor rules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cats_dogs_other.core.paths import REPO_ROOT

PAGES = [
    REPO_ROOT / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
    REPO_ROOT / "deploy" / "README.md",
    REPO_ROOT / "bench" / "README.md",
    *sorted((REPO_ROOT / "packages").glob("*/README.md")),
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def github_anchor(heading: str) -> str:
    """GitHub's slug: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(text):
        slug = github_anchor(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_pages_are_found() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "settings.md", "auth.md", "training.md"} <= names


def test_the_anchor_rule_matches_github() -> None:
    assert github_anchor("DPoP (sender-constrained tokens)") == "dpop-sender-constrained-tokens"
    assert github_anchor("The shared folder (`../shared`)") == "the-shared-folder-shared"
    assert github_anchor("`make run` (`python -m cats_dogs_other.stack`)") == (
        "make-run-python--m-cats_dogs_otherstack"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, fragment = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target}: no heading #{fragment}")
    assert not broken, f"{page.relative_to(REPO_ROOT)}: " + "; ".join(broken)


def test_the_docs_index_lists_every_page() -> None:
    index = (REPO_ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    listed = {target.partition("#")[0] for target in LINK.findall(index)}
    pages = {page.name for page in (REPO_ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= listed, f"docs/README.md lacks a row for {sorted(pages - listed)}"
