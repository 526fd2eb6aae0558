"""Count the figures issue #28 sets targets for, so `make check` can hold the code to them.

For a package (``cats_dogs_other`` by default) it counts:

- import cycles: strongly connected groups in the graph of module-level imports, read with
  ``ast``. Those under ``if TYPE_CHECKING:`` count (they tie the modules' designs together as
  much as the others; the report says which cycles they alone close); those inside functions
  do not;
- functions longer than the limit, by ``end_lineno - lineno + 1`` (decorators not counted);
- the lines of the training subpackage (``wc -l`` over every file of its tree that git tracks,
  its requirements included; outside a git checkout, every file but ``__pycache__``);
- the lines of its tests (``tests/<sub>``) per line of that code.

Exit status: 0 when every target holds, 1 when one is missed. ``--report`` prints the same
figures but does not fail; ``--report-only lines,ratio`` does not fail on the targets it names
(``cycles``, ``functions``, ``lines``, ``ratio``), for those the code does not meet yet, and
holds the code to the rest.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 60
MAX_TRAIN_LINES = 3200
MIN_TEST_RATIO = 0.6
TARGETS = frozenset({"cycles", "functions", "lines", "ratio"})


@dataclass
class Figures:
    """What one count found; ``missed`` names each target that does not hold."""

    cycles: list[list[str]] = field(default_factory=list)
    runtime_cycles: list[list[str]] = field(default_factory=list)
    long_functions: list[tuple[str, int]] = field(default_factory=list)
    longest: tuple[str, int] = ("", 0)
    sub_lines: int = 0
    test_lines: int = 0
    missed: dict[str, str] = field(default_factory=dict)  # target -> what missed

    @property
    def ratio(self) -> float:
        return self.test_lines / self.sub_lines if self.sub_lines else 0.0


def modules(package: Path) -> dict[str, Path]:
    """Every module under ``package`` by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(
    body: Sequence[ast.stmt], typing: bool = True
) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements of the module's body, also inside if/try/with blocks; those under
    ``if TYPE_CHECKING:`` only when ``typing``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if typing or not _is_type_checking(node.test):
                yield from _module_level(node.body, typing)
            yield from _module_level(node.orelse, typing)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level(block, typing)
            for handler in node.handlers:
                yield from _module_level(handler.body, typing)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body, typing)


def _resolve(name: str, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``node`` (in module ``name``) imports."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    base = node.module or ""
    if node.level:
        is_package = known[name].name == "__init__.py"
        anchor = name.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    targets = set()
    for alias in node.names:
        child = f"{base}.{alias.name}"
        if child in known:
            targets.add(child)
        elif base in known:
            targets.add(base)
    return targets


def import_graph(known: dict[str, Path], typing: bool = True) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports at module level (with ``typing``, also
    those imported only under ``if TYPE_CHECKING:``)."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in _module_level(tree.body, typing):
            edges |= _resolve(name, node, known)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(groups, key=lambda group: (-len(group), group))


def long_functions(package: Path, limit: int) -> list[tuple[str, int]]:
    """``(path:line name, lines)`` for each function or method over ``limit`` lines."""
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    where = f"{path.relative_to(package.parent)}:{node.lineno} {node.name}"
                    found.append((where, lines))
    return sorted(found, key=lambda item: (-item[1], item[0]))


def python_lines(folder: Path) -> int:
    """What ``wc -l`` counts (newline characters) over every ``.py`` file under ``folder``."""
    return sum(path.read_bytes().count(b"\n") for path in folder.rglob("*.py"))


def tree_lines(folder: Path) -> int:
    """What ``wc -l`` counts over the files of ``folder`` a clone has: build outputs such as the
    wheel copied into ``train/packages/`` are not the code's size."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "."], cwd=folder, capture_output=True, check=True
        ).stdout.split(b"\0")
        files = [folder / name.decode() for name in listed if name]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:
        files = [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sum(path.read_bytes().count(b"\n") for path in files if path.is_file())


def count(package: Path, tests: Path, sub: str = "train") -> Figures:
    """Every figure for ``package``, its subpackage ``sub`` and ``tests/<sub>``."""
    known = modules(package)
    figures = Figures(
        cycles=cycles(import_graph(known)),
        runtime_cycles=cycles(import_graph(known, typing=False)),
        long_functions=long_functions(package, MAX_FUNCTION_LINES),
        longest=next(iter(long_functions(package, 0)), ("", 0)),
        sub_lines=tree_lines(package / sub),
        test_lines=python_lines(tests / sub),
    )
    checks = {
        "cycles": (bool(figures.cycles), "import cycles"),
        "functions": (bool(figures.long_functions), f"functions over {MAX_FUNCTION_LINES} lines"),
        "lines": (figures.sub_lines > MAX_TRAIN_LINES, f"{sub}/ lines"),
        "ratio": (figures.ratio < MIN_TEST_RATIO, f"{sub}/ test lines per line"),
    }
    figures.missed.update({key: text for key, (miss, text) in checks.items() if miss})
    return figures


def render(figures: Figures, package: str, sub: str = "train") -> str:
    """The report: each figure against its target, then what makes up the misses."""
    mark = {True: "ok  ", False: "MISS"}
    rows = [
        f"{mark[not figures.cycles]} import cycles in {package}: {len(figures.cycles)} (target 0)",
        f"{mark[not figures.long_functions]} functions over {MAX_FUNCTION_LINES} lines: "
        f"{len(figures.long_functions)} (target 0; the longest: {figures.longest[1]} lines, "
        f"{figures.longest[0]})",
        f"{mark[figures.sub_lines <= MAX_TRAIN_LINES]} {package}/{sub}/ lines (wc -l, whole tree): "
        f"{figures.sub_lines} (target <= {MAX_TRAIN_LINES})",
        f"{mark[figures.ratio >= MIN_TEST_RATIO]} tests/{sub} lines per {sub}/ line: "
        f"{figures.test_lines}/{figures.sub_lines} = {figures.ratio:.2f} "
        f"(target >= {MIN_TEST_RATIO})",
    ]
    for number, group in enumerate(figures.cycles, 1):
        at_run_time = any(set(group) & set(other) for other in figures.runtime_cycles)
        how = "also at run time" if at_run_time else "closed only by `if TYPE_CHECKING:` imports"
        rows.append(f"  cycle {number} ({len(group)} modules, {how}): {', '.join(group)}")
    rows += [f"  {lines:4d} lines  {where}" for where, lines in figures.long_functions]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=ROOT / "cats_dogs_other")
    parser.add_argument("--tests", type=Path, default=ROOT / "tests")
    parser.add_argument(
        "--report", action="store_true", help="print the figures but exit 0 when a target is missed"
    )
    parser.add_argument(
        "--report-only",
        default="",
        metavar="TARGETS",
        help="comma-separated targets (cycles, functions, lines, ratio) reported but not enforced",
    )
    args = parser.parse_args(argv)
    figures = count(args.package, args.tests)
    print(render(figures, args.package.name))
    if not figures.missed:
        print("every target holds")
        return 0
    tolerated = TARGETS if args.report else {t for t in args.report_only.split(",") if t}
    if unknown := tolerated - TARGETS:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {sorted(TARGETS)}")
    failing = sorted(set(figures.missed) - tolerated)
    print(
        f"targets missed: {', '.join(figures.missed.values())}; "
        + (f"failing: {', '.join(failing)}" if failing else "reported only")
    )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
