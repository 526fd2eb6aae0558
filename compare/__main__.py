"""Run the token battery against this API and other validators; print and write the tables.

Installs oidc-jwt-validation, auth0-fastapi-api (with auth0-api-python) and PyJWT, pinned in
compare/requirements.txt, into a throwaway environment (default .compare/venv), serves each the
way its documentation shows behind the same POST /upload, starts this API as deployed
(boot.py), and runs the same cases against all four: good tokens, malformed and forged
ones, bad claims and scopes, key rotation, and an issuer that is down, hangs or sends garbage.
The issuer is served over TLS on loopback with a throwaway CA. Takes about 5 minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from cats_dogs_other.testing.images import png
from compare.cases import CASES
from compare.issuer import TestIssuer, make_keys
from compare.report import case_table, summary_table
from compare.run import DEFAULT_QUIET_S, TargetResult, run_battery
from compare.targets import Target, ThisApi, library_targets
from compare.venv import ensure_venv, pinned_version
from reliability.stack import ROOT

DEFAULT_MODEL = ROOT / "cats_dogs_other" / "model" / "model.keras"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Environment: none needed; the child processes get OAUTH2_*, AUTH0_* and "
        "SSL_CERT_FILE from this command. Logs: .reliability/logs/.",
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=ROOT / ".compare" / "venv",
        help="throwaway environment (default: .compare/venv)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="model this API serves (default: the bundled one)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run these validators only, e.g. 'this API' PyJWT"
    )
    parser.add_argument(
        "--quiet-s",
        type=float,
        default=DEFAULT_QUIET_S,
        help="seconds without a key fetch before the rotation (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "compare" / "RESULTS.md",
        help="where the Markdown report goes (default: compare/RESULTS.md)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets: list[Target] = [ThisApi(args.model)]
    wanted = set(args.only or [])
    if not wanted or wanted - {"this API"}:
        python = ensure_venv(args.venv)
        for library in library_targets(python):
            library.library = f"{pinned_version(library.name)}, {library.library}"
            targets.append(library)
    targets = [t for t in targets if not wanted or t.name in wanted]
    results: list[TargetResult] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="compare-") as work,
        TestIssuer(make_keys(), Path(work)) as issuer,
    ):
        for target in targets:
            print(f"compare: {target.name} ...", flush=True)
            t0 = time.monotonic()
            results.append(run_battery(target, issuer, png((230, 20, 20)), quiet_s=args.quiet_s))
            passed = len(CASES) - len(results[-1].failed(CASES))
            took = time.monotonic() - t0
            print(f"compare: {target.name}: {passed}/{len(CASES)} in {took:.0f} s", flush=True)
    took = time.monotonic() - started
    report = (
        f"{len(CASES)} cases, measured in {took:.0f} s with `python -m compare`.\n\n"
        + summary_table(results)
        + "\n"
        + case_table(results)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print("\n" + report)
    print(f"compare: report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
