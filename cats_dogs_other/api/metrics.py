"""Prometheus metrics: one registry per app, a pure-ASGI middleware and ``GET /metrics``.

Why a registry per ``Metrics`` object rather than the global default: every app built by the
factory (tests build many) gets its own counters, so nothing leaks or clashes between them.

Why pure ASGI rather than ``BaseHTTPMiddleware``: it adds no task or memory stream per request
and does not buffer streaming bodies. Requests are labelled with the matched route's *template*
(``/items/{item_id}``), never the raw URL, so a client probing random paths cannot blow up the
number of time series; anything no route matched is labelled ``unmatched``.

``GET /metrics`` is deliberately unauthenticated, like ``/health``: Prometheus scrapes without
bearer tokens, and it exposes only aggregate counts and the model's name, version and sha256 --
no tokens, client ids or image data. Keep it off the public ingress (scrape it on the pod
network) if even that is too much.

Names: every metric carries the ``cats_dogs_other`` namespace, so the API's series never clash
with another exporter's on the same Prometheus; the HTTP ones then follow the conventional
``http_requests_total`` / ``http_request_duration_seconds`` names. docs/deployment.md lists
them all.

With several uvicorn workers (``WORKERS`` > 1) each process keeps its own counters and a scrape
reaches one of them; run one worker per container/pod when you need exact fleet-wide figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from kto.inference.drift import TOP_PROBABILITY_EDGES
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cats_dogs_other.api.middleware.route_template import route_template

NAMESPACE = "cats_dogs_other"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
MAX_COUNTED_CLASSES = 1000
HEALTHY_STORE = frozenset({"ok", "in-process"})
STORE_USES = ("dpop", "rate_limit")


class Metrics:
    """Every metric the API exports, registered in its own ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ns = self.registry, NAMESPACE
        self.requests_total = Counter(
            "http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], namespace=ns, registry=r,
        )  # fmt: skip
        self.request_duration_seconds = Histogram(
            "http_request_duration_seconds", "Time from request start to the end of the response.",
            ["route"], buckets=LATENCY_BUCKETS, namespace=ns, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "batch_size", "Images per forward pass run by the micro-batcher.",
            buckets=BATCH_BUCKETS, namespace=ns, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "queue_depth", "Images waiting for the inference thread.", namespace=ns, registry=r
        )
        self.inference_seconds = Histogram(
            "inference_seconds", "Duration of one batched forward pass.",
            buckets=INFERENCE_BUCKETS, namespace=ns, registry=r,
        )  # fmt: skip
        self.rejections_total = Counter(
            "inference_rejections", "Requests shed with 503 (queue_full, timeout).",
            ["reason"], namespace=ns, registry=r,
        )  # fmt: skip
        self.auth_failures_total = Counter(
            "auth_failures", "Rejected credentials by reason (e.g. expired, bad_audience).",
            ["reason"], namespace=ns, registry=r,
        )  # fmt: skip
        self.model_info = Info("model", "The model being served.", namespace=ns, registry=r)
        self.model_output_invalid_total = Counter(
            "model_output_invalid", "Answers refused (500) because the model output NaN or inf.",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.predictions_total = Counter(
            "predictions", "Answers given, by predicted class.",
            ["class_name"], namespace=ns, registry=r,
        )  # fmt: skip
        self.top_probability = Histogram(
            "top_probability", "The probability of each answer's predicted class.",
            buckets=TOP_PROBABILITY_EDGES, namespace=ns, registry=r,
        )  # fmt: skip
        self._counted_classes: frozenset[str] = frozenset()
        self._add_fleet_metrics()

    def _add_fleet_metrics(self) -> None:
        """What several replicas sharing a state store report: who answered, the store's
        health and errors, and the per-client limit's refusals."""
        r, ns = self.registry, NAMESPACE
        self.replica_info = Info(
            "replica", "This process's REPLICA_ID (default: the host name).",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.state_store_up = Gauge(
            "state_store_up",
            "1 when the state store answered its last background check (or is in-process).",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.state_store_errors_total = Counter(
            "state_store_errors", "Calls to the state store that failed or timed out, by use.",
            ["use"], namespace=ns, registry=r,
        )  # fmt: skip
        self.rate_limited_total = Counter(
            "rate_limited", "Requests refused with 429 by the per-client limit (no client label).",
            namespace=ns, registry=r,
        )  # fmt: skip
        for use in STORE_USES:  # present at 0 from the start, for rules and dashboards
            self.state_store_errors_total.labels(use=use)

    def set_model(
        self, *, name: str, version: str, sha256: str, file: str, precision: str, backend: str
    ) -> None:
        """``sha256`` is the served ``file``'s, run in ``precision`` by ``backend``."""
        info = {"name": name, "version": version, "sha256": sha256, "file": file}
        self.model_info.info({**info, "precision": precision, "backend": backend})

    def set_replica(self, replica_id: str) -> None:
        self.replica_info.info({"replica_id": replica_id})

    def watch_state(self, health: Callable[[], str]) -> None:
        """The gauge reads the store's last background check at scrape time (no I/O)."""
        self.state_store_up.set_function(lambda: float(health() in HEALTHY_STORE))

    def count_classes(self, classes: Sequence[str]) -> None:
        """Count answers per class, for at most MAX_COUNTED_CLASSES classes (bounded series)."""
        self._counted_classes = (
            frozenset(classes) if len(classes) <= MAX_COUNTED_CLASSES else frozenset()
        )
        for class_name in self._counted_classes:
            self.predictions_total.labels(class_name=class_name)

    def prediction(self, class_name: str, top_probability: float) -> None:
        if class_name in self._counted_classes:
            self.predictions_total.labels(class_name=class_name).inc()
        self.top_probability.observe(top_probability)

    def auth_failure(self, reason: str) -> None:
        """Count a rejected credential; ``reason`` must come from a small fixed set."""
        self.auth_failures_total.labels(reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by route template and final status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before responding

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = route_template(scope)
            self.metrics.requests_total.labels(route, scope["method"], str(status)).inc()
            self.metrics.request_duration_seconds.labels(route).observe(
                time.perf_counter() - started
            )


def install_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Add the middleware and an unauthenticated ``GET /metrics`` (see module docstring)."""
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition."}
    }
    app.add_api_route(
        "/metrics",
        prometheus_metrics,
        methods=["GET"],
        summary="Prometheus metrics (unauthenticated, like /health)",
        tags=["operations"],
        response_class=Response,
        responses=responses,
    )
