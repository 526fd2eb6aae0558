"""``python -m reliability [CHECK ...] [--quick]``: run the checks, print figures, write RESULTS.md.

Exit status 0 only when every selected check passed.
"""

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from cats_dogs_other.core.cli_help import EnvironmentHelpFormatter
from cats_dogs_other.loopback import ChildError
from reliability import served_model
from reliability.checks import Context, registry
from reliability.report import RESULTS_MD, CheckResult, render_markdown, write_markdown
from reliability.stack import ROOT

ENVIRONMENT = """\
environment variables:
  anything set             passed to the API under test (see python boot.py --help), except
                           OAUTH2_* and JWKS_*, which point it at the checks' own issuer
  TF_CPP_MIN_LOG_LEVEL     set to 2 for the subprocess that builds a stand-in model
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    names = list(registry())
    parser = argparse.ArgumentParser(
        prog="python -m reliability",
        description="End-to-end reliability checks against real processes on 127.0.0.1.",
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
    )
    parser.add_argument(
        "checks",
        nargs="*",
        metavar="CHECK",
        help=f"checks to run (default: all): {', '.join(names)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke variant (fewer requests, same criteria)"
    )
    parser.add_argument("--model", help="model file to serve (default: the bundled model)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"markdown summary (default: {RESULTS_MD.relative_to(ROOT)}; "
        "--quick runs write under .reliability/ unless given)",
    )
    args = parser.parse_args(argv)
    if unknown := [c for c in args.checks if c not in names]:
        parser.error(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    return args


def run_check(name: str, ctx: Context) -> CheckResult:
    title, check = registry()[name]
    result = CheckResult(name, title)
    print(f"\n== {name}: {title}", flush=True)
    start = time.monotonic()
    try:
        check(ctx, result)
    except ChildError as exc:
        result.error = f"stack error: {str(exc).splitlines()[0]}"
        print(exc, file=sys.stderr)
    except Exception as exc:  # a crash of the harness must fail the check, not hide it
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    result.duration_s = time.monotonic() - start
    print(result.status_line(), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    selected = args.checks or list(registry())
    start = time.monotonic()
    model_path = served_model.resolve(args.model)
    ctx = Context(model_path=model_path, quick=args.quick)
    print(f"model: {model_path}; quick: {args.quick}; checks: {', '.join(selected)}", flush=True)

    results = [run_check(name, ctx) for name in selected]
    wall_s = time.monotonic() - start

    try:
        shown_model = str(model_path.relative_to(ROOT))
    except ValueError:
        shown_model = str(model_path)
    output = args.output or (
        ROOT / ".reliability" / "RESULTS-quick.md" if args.quick else RESULTS_MD
    )
    path = write_markdown(
        render_markdown(results, quick=args.quick, wall_s=wall_s, model=shown_model), output
    )
    print("\n== summary")
    for result in results:
        print(result.status_line())
    passed = all(r.passed for r in results)
    print(
        f"{'PASS' if passed else 'FAIL'}: {sum(r.passed for r in results)}/{len(results)} "
        f"checks passed in {wall_s:.0f} s; summary written to {path}",
        flush=True,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
