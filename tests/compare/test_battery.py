"""The comparison battery (``python -m compare``): its case list, its tables, and this API passing
every case, served in-process by uvicorn behind the battery's real TLS issuer.

The libraries compared are not installed here (they live in ``.compare/venv``); their results
come from running the command, shown in the README.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cats_dogs_other.api.app import create_app
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.testing.images import png
from compare.cases import ANY_4XX, CASES, SESSIONS, Case, Outcome
from compare.issuer import TestIssuer, make_keys
from compare.report import case_table, summary_table
from compare.run import TargetResult, run_battery, run_case
from tests.api.support import serve

RFC_6750_ANSWERS = {200, 400, 401, 403, 503}


def test_the_case_ids_are_unique_and_the_battery_is_broad() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) >= 50
    groups = {case.group for case in CASES}
    assert groups >= {"good", "malformed", "algorithm", "keys", "time", "claims", "scope"}
    assert groups >= {"rotation", "outage"}


def test_every_case_expects_what_rfc_6750_prescribes() -> None:
    for case in CASES:
        assert case.expect <= RFC_6750_ANSWERS or case.expect == ANY_4XX, case.id
    assert {c.id for c in CASES if c.expect == {403}} >= {"no-scope", "scope-plural"}
    assert all(c.expect == {200} for c in CASES if c.group == "good")


def test_cold_sessions_start_the_validator_while_the_issuer_misbehaves() -> None:
    modes = {session.name: session.start_mode for session in SESSIONS}
    assert modes == {
        "cold-refused": "refuse",
        "cold-garbage": "garbage",
        "cold-hang": "slow",
        "warm": "pass",
    }
    assert SESSIONS[-1].cases[-1].id == "outage-after-unknown-kid"  # restores the issuer


def _result(name: str, failing: dict[str, list[int | None]]) -> TargetResult:
    result = TargetResult(name, "test")
    for case in CASES:
        statuses = failing.get(case.id)
        result.outcomes[case.id] = (
            Outcome(True, [min(case.expect)]) if statuses is None else Outcome(False, statuses)
        )
    return result


def test_summary_table_counts_passes_failures_and_unexpected_5xx() -> None:
    perfect = _result("perfect", {})
    flaky = _result("flaky", {"alg-none": [200], "valid": [500], "cold-issuer-down": [401]})

    lines = summary_table([perfect, flaky]).splitlines()

    assert lines[0] == "| validator | cases passed | 5xx seen | failed cases |"
    total = len(CASES)
    assert lines[2] == f"| perfect (test) | {total}/{total} | 0 | none |"
    assert lines[3] == (
        f"| flaky (test) | {total - 3}/{total} | 1 | `cold-issuer-down`, `valid`, `alg-none` |"
    )


def test_an_expected_or_tolerated_503_is_not_an_unexpected_5xx() -> None:
    by_id = {case.id: case for case in CASES}
    assert by_id["cold-issuer-down"].unexpected_5xx(Outcome(True, [503])) == 0
    assert by_id["cold-recovery"].unexpected_5xx(Outcome(True, [503, 503, 200])) == 0
    assert by_id["cold-recovery"].unexpected_5xx(Outcome(False, [500, 502])) == 2
    assert by_id["valid"].unexpected_5xx(Outcome(False, [503])) == 1


def test_case_table_has_one_row_per_case_with_each_answer() -> None:
    table = case_table([_result("a", {"alg-none": [200, None]}), _result("b", {})])
    rows = table.splitlines()[2:]
    assert len(rows) == len(CASES)
    alg_none = next(row for row in rows if row.startswith("| `alg-none`"))
    assert alg_none.endswith("| 401 | FAIL 200/none | pass 401 |")


# -- this API against the battery -----------------------------------------------------------


@dataclass
class InProcessApi:
    """The real app under uvicorn on loopback (tests.api.support.serve), trusting the issuer's
    CA. A 1 s refetch cooldown lets the rotation come 1.5 s after the last fetch instead of 31,
    and a 2 s fetch timeout shortens the hanging-issuer case."""

    make_settings: Callable[..., Settings]
    name: str = "this API"
    library: str = "in-process"

    @contextlib.contextmanager
    def running(self, issuer: TestIssuer, *, ready: bool) -> Iterator[str]:
        settings = self.make_settings(
            oauth2_issuer=issuer.url,
            oauth2_audience=issuer.audience,
            oauth2_jwks_uri=None,
            jwks_refresh_cooldown_s=1,
            jwks_fetch_timeout_s=2,
        )
        transport = httpx.AsyncHTTPTransport(verify=issuer.client_context)
        with serve(create_app(settings, transport=transport)) as (host, port):
            url = f"http://{host}:{port}"
            if ready:
                _wait_ready(url)
            yield url


def _wait_ready(url: str) -> None:
    for _ in range(200):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError("the API did not become ready")


@pytest.mark.slow
def test_this_api_passes_every_case(api_settings: Callable[..., Any], tmp_path: Path) -> None:
    with TestIssuer(make_keys(), tmp_path) as issuer:
        result = run_battery(InProcessApi(api_settings), issuer, png((230, 20, 20)), quiet_s=1.5)

    failures = {
        case.id: result.outcomes[case.id] for case in CASES if not result.outcomes[case.id].passed
    }
    assert failures == {}
    assert result.unexpected_5xx(CASES) == 0


def test_a_case_that_breaks_is_reported_as_a_battery_error() -> None:
    broken = Case("broken", "good", "raises", frozenset({200}), lambda ctx: 1 / 0)  # type: ignore[arg-type, return-value]
    outcome = run_case(broken, None)  # type: ignore[arg-type]
    assert outcome.passed is False and outcome.note == "battery error: ZeroDivisionError"
