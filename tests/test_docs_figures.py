"""The README stays a front door and the figures in the pages a user reads stay sourced.

What can be checked mechanically is: the README's length, its two commands and three paths,
a table of contents whose rows reach a page that really covers each topic, a measured figure
that names its date or its results file, no copy of the live benchmark results without that
run's date, and none of the stale figures issue #28 listed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_docs_links import FENCE, LINK, PAGES, REPO_ROOT, anchors

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
BENCH_RESULTS = REPO_ROOT / "bench" / "results" / "RESULTS.md"

# A topic of the README's documentation table -> (a page its row must link, a heading that page
# must have, words its text must contain).
TOPICS = {
    r"auth and DPoP": ("auth.md", "dpop-sender-constrained-tokens", ("Auth0", "DPoP", "JWKS")),
    r"hostile input": ("hostile-input.md", "uploaded-images-decoding-bounds", ("bomb", "422")),
    r"your own Keras model.*metadata contract": (
        "training.md",
        "serving-your-own-keras-model-the-metadata-contract",
        ("metadata.json", "input_size", "preprocessing", "kto-keras-inference/1"),
    ),
    r"performance": ("performance.md", "the-thread-plan", ("bench/results/RESULTS.md",)),
    r"deployment and scaling": ("scaling-out.md", "sizing", ("STATE_URL", "replica")),
    r"^CI": ("ci.md", "the-fast-loop-make-check", (".github/actions/classify",)),
    r"settings reference": ("settings.md", "model", ("OAUTH2_ISSUER", "OAUTH2_AUDIENCE")),
    r"comparison": ("comparison.md", "", ("compare/RESULTS.md", "oidc-jwt-validation")),
    r"\.\./shared": (
        "shared.md",
        "getting-it-into-a-clone-or-a-codespace",
        ("CDO_SHARED_DIR", "SHARED=", "Codespace", "skip"),
    ),
}
# A measurement verb next to a figure with a unit must come with a date, a results file or a
# commit that holds it.
MEASURED = re.compile(
    r"\b(measured|measures|measuring)\b|\b(took|takes|taking)( about| up to)? ~?\d", re.IGNORECASE
)
FIGURE = re.compile(
    r"\d[\d.,]*\s?(ms|s|min|µs|us|MB|MiB|GB|GiB|KiB|req/s|img/s|images/s|%)(?![\w/])"
)
SOURCE = re.compile(
    r"20\d\d-\d\d(-\d\d)?|RESULTS[\w-]*\.md|TUNING\.md|metrics\.json|MODEL_CARD\.md"
    r"|git show [0-9a-f]{7,40}"
)
BENCH_FIGURE = re.compile(r"\d[\d.,]*\s?(req/s|img/s|images/s|MiB|ms)(?![\w/])")
PINNED_RUN = re.compile(r"git show ([0-9a-f]{7,40}):bench/results/RESULTS\.md")
STALE = ["4 min 2 s", "about 370 MB", "about 100 MB", "0.99998"]


def blocks(page: Path) -> list[str]:
    """The page's paragraphs, list items and table rows, outside code fences."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        found += [b for b in re.split(r"\n(?=\s*(?:[-*|]|\d+\.)\s)", paragraph) if b.strip()]
    return found


def documentation_rows() -> dict[str, list[str]]:
    """The README's "Documentation" table: topic cell -> link targets of its row."""
    section = README.read_text(encoding="utf-8").split("## Documentation", 1)[1]
    table = [line for line in section.splitlines() if line.startswith("|")]
    rows = {}
    for line in table[2:]:  # after the header and its |---| line
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2:
            rows[cells[0]] = LINK.findall(cells[1])
    return rows


def test_the_readme_is_a_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md: at most 200 lines (issue #28)"
    commands = re.search(r"## Two commands\n(.*?)\n## ", text, re.DOTALL)
    assert commands, "README.md lacks its 'Two commands' section"
    assert re.search(r"^make run\b", commands.group(1), re.MULTILINE)
    assert re.search(r"^make test\b", commands.group(1), re.MULTILINE)
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    for path in (r"Try it locally", r"Auth0.*CI", r"Deploy"):
        assert any(re.search(path, heading) for heading in headings), f"no path '{path}'"
    assert "docs/README.md" in {target.partition("#")[0] for target in LINK.findall(text)}


def test_the_rule_finds_the_table_rows() -> None:
    rows = documentation_rows()
    assert len(rows) >= len(TOPICS), rows
    assert all(targets for targets in rows.values()), "a row without a link"


@pytest.mark.parametrize("topic", TOPICS)
def test_the_table_of_contents_reaches_a_page_that_covers_each_topic(topic: str) -> None:
    page_name, heading, words = TOPICS[topic]
    rows = [targets for cell, targets in documentation_rows().items() if re.search(topic, cell)]
    assert rows, f"README.md's Documentation table has no row for '{topic}'"
    pages = {Path(target.partition("#")[0]).name for targets in rows for target in targets}
    assert page_name in pages, f"the '{topic}' row links {sorted(pages)}, not {page_name}"
    page = DOCS / page_name
    if heading:
        assert heading in anchors(page), f"{page_name} lacks the heading #{heading}"
    missing = [word for word in words if word not in page.read_text(encoding="utf-8")]
    assert not missing, f"{page_name} never mentions {missing}"


def test_the_figure_rule_tells_sourced_from_unsourced() -> None:
    unsourced = "The install measured 330 MiB with a fresh venv."
    assert MEASURED.search(unsourced) and FIGURE.search(unsourced)
    assert not SOURCE.search(unsourced)
    assert SOURCE.search("measured 330 MiB (2026-12-06, 2-core AMD EPYC)")
    assert SOURCE.search("see [the run](../bench/results/RESULTS.md)")
    assert not MEASURED.search("a limit of 30 s (`UPLOAD_TIMEOUT_S`)")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_measured_figure_names_its_date_or_its_source(page: Path) -> None:
    unsourced = [
        block.strip()[:160]
        for block in blocks(page)
        if MEASURED.search(block) and FIGURE.search(block) and not SOURCE.search(block)
    ]
    assert not unsourced, (
        f"{page.relative_to(REPO_ROOT)}: a measured figure needs its date and machine or a "
        f"link to the committed results file that holds it: {unsourced}"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_figures_beside_the_live_bench_results_are_that_runs(page: Path) -> None:
    """A block that links bench/results/RESULTS.md and quotes bench figures names that file's
    run date, or pins the run it copied with ``git show COMMIT:bench/results/RESULTS.md``:
    a new bench run must not silently leave other figures under its name."""
    run = re.search(r"^Run (20\d\d-\d\d-\d\d)", BENCH_RESULTS.read_text(encoding="utf-8"), re.M)
    assert run, "bench/results/RESULTS.md lost its 'Run YYYY-MM-DD' line"
    stale = [
        block.strip()[:160]
        for block in blocks(page)
        if "bench/results/RESULTS.md" in block.replace("../", "")
        and BENCH_FIGURE.search(block)
        and run.group(1) not in block
        and not PINNED_RUN.search(block)
    ]
    assert not stale, f"{page.relative_to(REPO_ROOT)}: copies of another run's figures: {stale}"


def test_the_pinned_bench_runs_exist() -> None:
    pinned = {c for page in PAGES for c in PINNED_RUN.findall(page.read_text(encoding="utf-8"))}
    assert pinned, "no page pins an earlier bench run (the rule above would be untested)"
    git = shutil.which("git")
    if git is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("no git checkout: the pinned commits cannot be looked up")
    shallow = subprocess.run(
        [git, "rev-parse", "--is-shallow-repository"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    if shallow.stdout.strip() != "false":
        pytest.skip("a shallow clone lacks the history the pinned runs live in")
    for commit in sorted(pinned):
        found = subprocess.run(
            [git, "cat-file", "-e", f"{commit}:bench/results/RESULTS.md"], cwd=REPO_ROOT
        )
        assert found.returncode == 0, f"git show {commit}:bench/results/RESULTS.md: no such file"


def test_the_stale_figures_of_issue_28_are_gone() -> None:
    found = [
        f"{page.relative_to(REPO_ROOT)}: {figure}"
        for page in PAGES
        for figure in STALE
        if figure in page.read_text(encoding="utf-8")
    ]
    assert not found, found
