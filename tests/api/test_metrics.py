"""The metrics middleware and /metrics on a small FastAPI app, over TestClient (real ASGI)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cats_dogs_other.api.metrics import Metrics, install_metrics

REQUESTS = "cats_dogs_other_http_requests_total"
DURATION = "cats_dogs_other_http_request_duration_seconds"


def build_app(metrics: Metrics) -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise HTTPException(status_code=404, detail="no item 0")
        return {"item_id": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    @router.get("/things/{name}")
    async def get_thing(name: str) -> dict[str, str]:
        return {"name": name}

    app.include_router(router)
    install_metrics(app, metrics)
    return app


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(metrics: Metrics) -> Iterator[TestClient]:
    with TestClient(build_app(metrics), raise_server_exceptions=False) as c:
        yield c


def samples(client: TestClient, name: str) -> list[tuple[dict[str, str], float]]:
    """Scrape /metrics through HTTP and return the samples called ``name``."""
    response = client.get("/metrics")
    assert response.status_code == 200
    found = []
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                found.append((sample.labels, sample.value))
    return found


def value(client: TestClient, name: str, **labels: str) -> float:
    matches = [
        v for lbl, v in samples(client, name) if all(lbl.get(k) == w for k, w in labels.items())
    ]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_counts_requests_by_route_template_method_and_status(client: TestClient) -> None:
    for item_id in (1, 2, 3):
        assert client.get(f"/items/{item_id}").status_code == 200
    assert client.get("/items/0").status_code == 404
    assert client.get("/items/abc").status_code == 422

    route = "/items/{item_id}"
    assert value(client, REQUESTS, route=route, method="GET", status="200") == 3
    assert value(client, REQUESTS, route=route, method="GET", status="404") == 1
    assert value(client, REQUESTS, route=route, method="GET", status="422") == 1


def test_unhandled_exception_is_counted_as_500(client: TestClient) -> None:
    assert client.get("/boom").status_code == 500
    assert value(client, REQUESTS, route="/boom", method="GET", status="500") == 1


def test_included_router_keeps_the_full_template(client: TestClient) -> None:
    client.get("/v1/things/alpha")
    client.get("/v1/things/beta")
    assert value(client, REQUESTS, route="/v1/things/{name}", status="200") == 2


def test_random_paths_do_not_create_label_values(client: TestClient) -> None:
    for i in range(50):
        assert client.get(f"/no/such/path/{i}").status_code == 404
        client.get(f"/items/{i + 1}")
    routes = {lbl["route"] for lbl, _ in samples(client, REQUESTS)}
    assert routes == {"unmatched", "/items/{item_id}"}  # the scrape itself is counted after it
    assert value(client, REQUESTS, route="unmatched", method="GET", status="404") == 50


def test_wrong_method_is_labelled_with_the_route(client: TestClient) -> None:
    assert client.post("/items/1").status_code == 405
    assert value(client, REQUESTS, route="/items/{item_id}", method="POST") == 1


def test_latency_histogram_has_buckets_and_counts(client: TestClient) -> None:
    for _ in range(4):
        client.get("/items/7")
    buckets = {
        lbl["le"]: v
        for lbl, v in samples(client, DURATION + "_bucket")
        if lbl["route"] == "/items/{item_id}"
    }
    assert {"0.005", "0.1", "1.0", "+Inf"} <= set(buckets)
    assert buckets["+Inf"] == 4
    # cumulative buckets never decrease
    ordered = [buckets[k] for k in sorted(buckets, key=lambda b: float(b))]
    assert ordered == sorted(ordered)
    assert value(client, DURATION + "_count", route="/items/{item_id}") == 4
    assert value(client, DURATION + "_sum", route="/items/{item_id}") > 0


def test_metrics_endpoint_is_open_and_in_text_format(client: TestClient) -> None:
    response = client.get("/metrics")  # no Authorization header at all
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE cats_dogs_other_http_requests_total counter" in response.text


def test_model_info_queue_depth_auth_failures_and_batches(
    client: TestClient, metrics: Metrics
) -> None:
    served = {"file": "model.int8.onnx", "precision": "int8", "backend": "onnx"}
    metrics.set_model(name="cats-dogs-other", version="1.0.0", sha256="ab" * 32, **served)
    metrics.auth_failure("expired")
    metrics.auth_failure("expired")
    metrics.auth_failure("bad_audience")
    metrics.batch_size.observe(3)
    metrics.batch_size.observe(16)
    metrics.inference_seconds.observe(0.04)
    metrics.queue_depth.set(5)
    metrics.rejections_total.labels(reason="queue_full").inc()

    info = samples(client, "cats_dogs_other_model_info")
    model = {"name": "cats-dogs-other", "version": "1.0.0", "sha256": "ab" * 32}
    assert info == [({**model, **served}, 1.0)]
    assert value(client, "cats_dogs_other_auth_failures_total", reason="expired") == 2
    assert value(client, "cats_dogs_other_auth_failures_total", reason="bad_audience") == 1
    assert value(client, "cats_dogs_other_batch_size_bucket", le="4.0") == 1
    assert value(client, "cats_dogs_other_batch_size_bucket", le="16.0") == 2
    assert value(client, "cats_dogs_other_batch_size_sum") == 19
    assert value(client, "cats_dogs_other_inference_seconds_count") == 1
    assert value(client, "cats_dogs_other_queue_depth") == 5
    assert value(client, "cats_dogs_other_inference_rejections_total", reason="queue_full") == 1


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # would raise "Duplicated timeseries" if shared
    first.auth_failure("expired")
    assert (
        first.registry.get_sample_value(
            "cats_dogs_other_auth_failures_total", {"reason": "expired"}
        )
        == 1
    )
    assert (
        second.registry.get_sample_value(
            "cats_dogs_other_auth_failures_total", {"reason": "expired"}
        )
        is None
    )


def test_every_metric_carries_the_project_namespace(client: TestClient, metrics: Metrics) -> None:
    metrics.set_model(
        name="m", version="1", sha256="00" * 32, file="m.onnx", precision="f32", backend="onnx"
    )
    client.get("/items/1")
    response = client.get("/metrics")
    lines = response.text.splitlines()
    declared = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    samples_ = [line.split("{")[0].split()[0] for line in lines if not line.startswith("#")]

    assert {
        "cats_dogs_other_http_requests_total",
        "cats_dogs_other_http_request_duration_seconds",
        "cats_dogs_other_batch_size",
        "cats_dogs_other_queue_depth",
        "cats_dogs_other_inference_seconds",
        "cats_dogs_other_inference_rejections_total",
        "cats_dogs_other_auth_failures_total",
        "cats_dogs_other_model_info",
    } <= declared
    assert samples_
    assert all(name.startswith("cats_dogs_other_") for name in declared | set(samples_))
