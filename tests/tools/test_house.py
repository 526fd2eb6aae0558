"""tools/house.py counts cycles, long functions and lines the way issue #28 defines them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tools import house


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def long_function(name: str, body_lines: int) -> str:
    return f"def {name}():\n" + "    x = 1\n" * body_lines


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, Path]:
    """A package with one 3-module cycle (one edge only for type checkers), a relative-import
    cycle of 2, an import inside a function (no edge), and one function of 61 lines."""
    pkg = tmp_path / "pkg"
    write(
        pkg,
        {
            "__init__.py": "",
            "train/__init__.py": "",
            "train/a.py": "from pkg.train.b import thing\n",
            "train/b.py": "import pkg.train.c\nthing = 1\n",
            "train/c.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.train import a\n"
            ),
            "train/late.py": "def f():\n    from pkg.train import a\n    return a\n",
            "api/__init__.py": "",
            "api/x.py": "from . import y\n",
            "api/y.py": "try:\n    from .x import z\nexcept ImportError:\n    pass\n"
            + long_function("sixty_one", 60)
            + long_function("sixty", 59),
        },
    )
    tests = tmp_path / "tests"
    write(tests, {"train/test_a.py": "assert True\n" * 5})
    return pkg, tests


def test_it_finds_each_cycle_and_ignores_imports_inside_functions(
    sample: tuple[Path, Path],
) -> None:
    pkg, tests = sample
    figures = house.count(pkg, tests)
    assert figures.cycles == [
        ["pkg.train.a", "pkg.train.b", "pkg.train.c"],
        ["pkg.api.x", "pkg.api.y"],
    ]
    assert figures.runtime_cycles == [["pkg.api.x", "pkg.api.y"]]  # c imports a for typing only


def test_it_lists_functions_over_sixty_lines_only(sample: tuple[Path, Path]) -> None:
    pkg, tests = sample
    figures = house.count(pkg, tests)
    assert figures.long_functions == [("pkg/api/y.py:5 sixty_one", 61)]
    assert figures.longest == ("pkg/api/y.py:5 sixty_one", 61)


def test_it_counts_lines_like_wc_and_the_tests_per_line(sample: tuple[Path, Path]) -> None:
    pkg, tests = sample
    figures = house.count(pkg, tests)
    # a 1 + b 2 + c 3 + late 3 + __init__ 0
    assert figures.sub_lines == 9
    assert figures.test_lines == 5
    assert figures.ratio == pytest.approx(5 / 9)
    assert figures.missed == {
        "cycles": "import cycles",
        "functions": "functions over 60 lines",
        "ratio": "train/ test lines per line",
    }


def test_the_tree_count_takes_what_git_tracks_and_leaves_build_outputs(tmp_path: Path) -> None:
    tree = tmp_path / "train"
    ignore = "*.whl\n__pycache__/\n"
    write(tree, {"a.py": "x = 1\n" * 3, "requirements.txt": "numpy==2\n", ".gitignore": ignore})
    write(tree, {"packages/built.whl": "\n" * 50, "__pycache__/a.pyc": "\n" * 9})
    assert house.tree_lines(tree) == 3 + 1 + 2 + 50  # not a checkout: every file but caches
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    assert house.tree_lines(tree) == 3 + 1 + 2  # the wheel is ignored, so not the code's size


def test_it_fails_on_a_missed_target_unless_reporting(
    sample: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pkg, tests = sample
    args = ["--package", str(pkg), "--tests", str(tests)]
    assert house.main(args) == 1
    assert house.main([*args, "--report"]) == 0
    assert house.main([*args, "--report-only", "cycles,ratio"]) == 1  # functions still fail
    assert house.main([*args, "--report-only", "cycles,functions,ratio"]) == 0
    with pytest.raises(SystemExit):
        house.main([*args, "--report-only", "beauty"])
    out = capsys.readouterr().out
    assert "MISS import cycles in pkg: 2 (target 0)" in out
    assert (
        "cycle 1 (3 modules, closed only by `if TYPE_CHECKING:` imports): "
        "pkg.train.a, pkg.train.b, pkg.train.c"
    ) in out
    assert "cycle 2 (2 modules, also at run time): pkg.api.x, pkg.api.y" in out
    assert "61 lines  pkg/api/y.py:5 sixty_one" in out


def test_a_tidy_package_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = tmp_path / "pkg"
    write(pkg, {"__init__.py": "", "train/__init__.py": "", "train/m.py": "from . import n\n"})
    write(pkg, {"train/n.py": "x = 1\n"})
    write(tmp_path / "tests", {"train/test_m.py": "x = 1\ny = 2\n"})
    assert house.main(["--package", str(pkg), "--tests", str(tmp_path / "tests")]) == 0
    assert "every target holds" in capsys.readouterr().out
