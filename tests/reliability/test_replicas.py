"""Replicas under faults, in ``make test``: real redis-server, HAProxy and API processes.

The scenarios of ``python -m reliability replicas`` (:mod:`reliability.checks.replicas`) with
:data:`~reliability.checks.replicas.TESTS`: 2 replicas, the tiny model, low rates, a 500 ms store
timeout and bounds three times looser. One fleet for the module; every process is stopped
(its whole process group) at the end, whatever happened. The tests run in this order and each
leaves the fleet whole for the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.checks import replicas
from reliability.fleet import Fleet
from reliability.report import CheckResult
from tests.support.services import require_services

pytestmark = pytest.mark.slow
BOUNDS = replicas.TESTS


@pytest.fixture(scope="module")
def fleet(tiny_model: Path) -> Iterator[Fleet]:
    require_services()
    with Fleet(tiny_model, BOUNDS.limits) as running:
        yield running


def passes(scenario: replicas.Scenario, fleet: Fleet) -> CheckResult:
    result = CheckResult(scenario.__name__, replicas.TITLE)
    scenario(fleet, BOUNDS, result)
    failed = [f"{c.requirement}: {c.measured}" for c in result.criteria if not c.ok]
    why = [*failed, f"figures: {result.figures}", *result.notes]
    assert result.criteria and not failed, "\n".join(why)
    return result


def test_a_proof_used_through_one_replica_is_a_replay_through_the_others(fleet: Fleet) -> None:
    passes(replicas.replay, fleet)


def test_a_noisy_client_gets_its_limit_across_replicas_and_no_more(fleet: Fleet) -> None:
    result = passes(replicas.rate_limits, fleet)
    assert len(result.criteria) == 4


def test_redis_down_fails_dpop_closed_and_bearer_open_then_recovers(fleet: Fleet) -> None:
    passes(replicas.store_outage, fleet)


def test_every_key_in_redis_expires(fleet: Fleet) -> None:
    result = passes(replicas.store_memory, fleet)
    assert "store memory: bytes per 10,000 live proofs" in result.figures


def test_a_killed_replica_loses_only_its_requests_in_flight(fleet: Fleet) -> None:
    passes(replicas.replica_killed, fleet)


def test_a_rolling_restart_fails_no_request(fleet: Fleet) -> None:
    passes(replicas.rolling_restart, fleet)
