"""The harness's judging helpers: classification, schedules, schema rewrite, summary."""

from __future__ import annotations

import json

import httpx
import pytest

from cats_dogs_other.loopback import LOOPBACK, free_port
from reliability import load
from reliability.checks.fuzz import _homogeneous_tuples_as_items
from reliability.checks.hostile import VALID, _kinds, _schedule
from reliability.report import CheckResult, render_markdown


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"prediction": "Cat", "values": [0.7, 0.2, 0.1]}, True),
        ({"prediction": "Other", "values": [0.34, 0.33, 0.33]}, True),
        ({"prediction": "Horse", "values": [0.7, 0.2, 0.1]}, False),
        ({"prediction": "Cat", "values": [0.7, 0.2]}, False),
        ({"prediction": "Cat", "values": [0.9, 0.9, 0.1]}, False),
        ({"values": [0.7, 0.2, 0.1]}, False),
    ],
)
def test_is_valid_prediction(body: dict[str, object], valid: bool) -> None:
    assert load.is_valid_prediction(json.dumps(body).encode()) is valid


def test_invalid_json_is_not_a_prediction() -> None:
    assert not load.is_valid_prediction(b"<html>")


def test_connection_refused_is_classified_refused() -> None:
    port = free_port()  # nobody listens on it

    async def go() -> load.Outcome:
        async with load.client(1, timeout_s=2) as http:
            return await load.send(http, "GET", f"http://{LOOPBACK}:{port}/")

    outcome = load.run(go())
    assert isinstance(outcome, load.Outcome)
    assert outcome.kind == "refused"
    assert outcome.sent is None  # never written: never accepted


def test_transport_kinds() -> None:
    assert load.transport_kind(httpx.RemoteProtocolError("x")) == "closed"
    assert load.transport_kind(httpx.ReadError("x")) == "reset"
    assert load.transport_kind(httpx.ReadTimeout("x")) == "timeout"


def test_hostile_schedule_is_exact_complete_and_interleaved() -> None:
    kinds = _kinds()
    plan = _schedule(kinds, 200)
    assert len(plan) == 200
    assert {k.name for k in plan} == {k.name for k in kinds}
    assert plan == _schedule(kinds, 200)  # deterministic
    first_half_valid = sum(k.name == VALID for k in plan[:100])
    assert 20 < first_half_valid < 90  # shuffled, not grouped


def test_homogeneous_tuples_become_items() -> None:
    schema = {
        "a": {"type": "array", "prefixItems": [{"type": "integer"}] * 2},
        "b": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
    }
    assert _homogeneous_tuples_as_items(schema) == 1
    assert schema["a"] == {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 2,
        "maxItems": 2,
    }
    assert "prefixItems" in schema["b"]


def test_result_passes_only_with_every_criterion() -> None:
    result = CheckResult("soak", "t")
    assert not result.passed  # no criterion: nothing proven
    result.require("a", True, 1)
    assert result.passed
    result.require("b", False, 2)
    assert not result.passed
    assert result.status_line().startswith("FAIL soak")
    text = render_markdown([result], quick=True, wall_s=1.0, model="m")
    assert "Overall: **FAIL**" in text and "| b | 2 | **FAILED** |" in text


def test_percentile() -> None:
    assert load.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert load.percentile(list(range(1, 101)), 99) == 99
