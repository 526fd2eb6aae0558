"""Observability across replicas: REPLICA_ID, W3C traceparent, drift metrics per answer."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from cats_dogs_other.api.middleware import tracing
from cats_dogs_other.api.middleware.access_log import ReplicaFilter
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.testing.issuer import FakeIssuer
from tests.api.support import bearer, running_app

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@pytest.fixture(scope="module")
def replica(
    make_settings: Callable[..., Settings], module_issuer: FakeIssuer
) -> Iterator[TestClient]:
    with running_app(make_settings(replica_id="replica-a"), module_issuer) as client:
        yield client


def access_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.name == "cats_dogs_other.access"]
    return record


def test_a_valid_traceparent_keeps_its_trace_on_the_log_line_and_the_response(
    replica: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cats_dogs_other.access")
    response = replica.get("/health", headers={"traceparent": VALID})
    match = TRACEPARENT.match(response.headers["traceparent"])
    assert match is not None
    assert match.group(1) == TRACE and match.group(2) != PARENT and match.group(3) == "01"
    record = access_record(caplog)
    assert record.trace_id == TRACE  # type: ignore[attr-defined]
    assert record.span_id == match.group(2)  # type: ignore[attr-defined]
    assert record.replica_id == "replica-a"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    [
        f"00-{TRACE.upper()}-{PARENT}-01",  # upper-case hex
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{PARENT}-01",  # forbidden version
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}-{PARENT}",
        "garbage",
        "",
    ],
)
def test_an_invalid_traceparent_is_replaced_by_a_new_trace(
    replica: TestClient, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    caplog.set_level(logging.INFO, logger="cats_dogs_other.access")
    response = replica.get("/health", headers={"traceparent": value})
    match = TRACEPARENT.match(response.headers["traceparent"])
    assert match is not None and match.group(1) not in (TRACE, TRACE.lower(), "0" * 32)
    assert access_record(caplog).trace_id == match.group(1)  # type: ignore[attr-defined]


def test_an_absent_traceparent_starts_a_trace_per_request(replica: TestClient) -> None:
    first = replica.get("/health").headers["traceparent"]
    second = replica.get("/health").headers["traceparent"]
    assert TRACEPARENT.match(first) and TRACEPARENT.match(second)
    assert first.split("-")[1] != second.split("-")[1]


def test_a_later_version_with_more_fields_is_accepted() -> None:
    context = tracing.from_header(f"01-{TRACE}-{PARENT}-01-future".encode())
    assert context.trace_id == TRACE and context.traceparent.startswith(f"00-{TRACE}-")


def test_every_log_record_names_the_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICA_ID", "replica-z")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "message", None, None)
    assert ReplicaFilter().filter(record)
    assert record.replica_id == "replica-z"  # type: ignore[attr-defined]


def test_answers_are_counted_per_class_with_the_top_probability(
    replica: TestClient, module_issuer: FakeIssuer, images: dict[str, bytes]
) -> None:
    headers = bearer(module_issuer.token())
    for colour in ("red", "red", "green"):
        files = {"file": ("a.png", images[colour], "image/png")}
        assert replica.post("/upload", headers=headers, files=files).status_code == 200
    parts = [("file", ("b.png", images["blue"], "image/png"))] * 2
    assert replica.post("/upload/batch", headers=headers, files=parts).status_code == 200
    text = replica.get("/metrics").text
    assert 'cats_dogs_other_predictions_total{class_name="Cat"} 2.0' in text
    assert 'cats_dogs_other_predictions_total{class_name="Dog"} 1.0' in text
    assert 'cats_dogs_other_predictions_total{class_name="Other"} 2.0' in text
    assert "cats_dogs_other_top_probability_count 5.0" in text
    edges = re.findall(r'cats_dogs_other_top_probability_bucket\{le="([^"]+)"\}', text)
    from kto.inference.drift import TOP_PROBABILITY_EDGES

    assert edges == [*(str(e) for e in TOP_PROBABILITY_EDGES), "+Inf"]
    assert 'cats_dogs_other_replica_info{replica_id="replica-a"} 1.0' in text
    assert "test-client" not in text  # no client id becomes a label


def test_per_class_counters_stop_above_a_thousand_classes() -> None:
    from cats_dogs_other.api.metrics import Metrics

    metrics = Metrics()
    metrics.count_classes([f"c{i}" for i in range(1001)])
    metrics.prediction("c1", 0.9)
    text = metrics.render().decode()
    assert 'class_name="c1"' not in text
    assert "cats_dogs_other_top_probability_count 1.0" in text


def test_store_series_exist_from_the_start(replica: TestClient) -> None:
    text = replica.get("/metrics").text
    assert "cats_dogs_other_state_store_up 1.0" in text  # in-process counts as up
    for use in ("dpop", "rate_limit"):
        assert f'cats_dogs_other_state_store_errors_total{{use="{use}"}} 0.0' in text
    assert "cats_dogs_other_rate_limited_total 0.0" in text
    assert replica.get("/health").json() == {"status": "OK", "state_store": "in-process"}
