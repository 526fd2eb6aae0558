"""The app factory and its lifespan.

``create_app(settings)`` builds a fresh app (tests pass their own settings and an httpx transport
that fakes the issuer); nothing heavy happens at import time. The lifespan loads the model once
through the wheel, off the event loop, and owns every long-lived resource: the HTTP client for
the issuer, the key cache, the decode pool and the micro-batcher. It closes them in reverse.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from kto.inference import DEFAULT_DECODE_LIMITS, Inference, ModelLoadError, configure_threads
from kto.inference.model import INT8_FILENAME, FileDigests, resolve_model, resolve_precision

from cats_dogs_other.api.auth.github_tokens import GitHubTokenValidator
from cats_dogs_other.api.auth.issuer_check import IssuerCheck
from cats_dogs_other.api.auth.issuers import IssuerRouter, build_policy_validators, describe
from cats_dogs_other.api.auth.jwks import DiscoveryDocument, KeyCache
from cats_dogs_other.api.auth.security import SCHEME_NAME
from cats_dogs_other.api.auth.tokens import TokenValidator
from cats_dogs_other.api.batching import MicroBatcher
from cats_dogs_other.api.docs import install_docs
from cats_dogs_other.api.dpop.binding import DPoPBinding, challenge_schemes
from cats_dogs_other.api.draining import Drain
from cats_dogs_other.api.errors import install_handlers
from cats_dogs_other.api.metrics import Metrics
from cats_dogs_other.api.middleware.access_log import AccessLogMiddleware
from cats_dogs_other.api.middleware.framing import AmbiguousFramingMiddleware
from cats_dogs_other.api.model_source import ModelSourceError
from cats_dogs_other.api.rate_limits import RateLimiter
from cats_dogs_other.api.resources import Resources
from cats_dogs_other.api.routes import dev_token, health, model_info, predict
from cats_dogs_other.api.schemas import declare_classes
from cats_dogs_other.api.settings import Settings, load_settings
from cats_dogs_other.api.startup import TRAIN_HINT, StartupError, record_failure
from cats_dogs_other.api.state import InProcessState, open_state

if TYPE_CHECKING:
    from cats_dogs_other.api.state_redis import RedisState

logger = logging.getLogger(__name__)

USER_AGENT = "cats-dogs-other-api (+key fetcher)"


def create_app(
    settings: Settings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the API. ``transport`` replaces the network for the issuer (tests only)."""
    settings = settings or load_settings()
    app = FastAPI(
        title="cats-dogs-other",
        summary="Classifies an image as Cat, Dog or Other. Bearer tokens from the OAuth2 issuer.",
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by install_docs
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.issuer_transport = transport
    app.state.auth_schemes = challenge_schemes(settings)  # WWW-Authenticate on 401/403
    install_handlers(app)
    for router in (health.router, predict.router, model_info.router):
        app.include_router(router)
    if settings.dev_token_proxy_url:
        app.include_router(dev_token.router)
    install_docs(app, settings)
    _install_metrics(app)
    app.add_middleware(AmbiguousFramingMiddleware)
    app.add_middleware(AccessLogMiddleware, replica_id=settings.replica_id)
    app.openapi = partial(_openapi, app, settings)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    settings: Settings = app.state.settings
    inference = await _load_model(settings)
    metrics = getattr(app.state, "metrics", None)
    async with AsyncExitStack() as stack:
        client = httpx.AsyncClient(
            transport=app.state.issuer_transport,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )
        stack.push_async_callback(client.aclose)
        keys, issuer_check = _start_issuer(settings, client, stack)
        state = await _open_state(settings, stack)
        policy_validators = _start_policy_issuers(settings, client, state, stack)
        drain = Drain(settings.shutdown_drain_s)
        stack.callback(drain.uninstall)
        drain.install(asyncio.get_running_loop())
        pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        batcher = MicroBatcher(
            inference.predict_arrays,
            max_batch_size=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            queue_size=settings.queue_max_size,
            timeout_s=settings.inference_timeout_s,
            metrics=metrics,
            lanes=_lanes(inference.backend, settings),
        )
        await batcher.start()
        stack.push_async_callback(batcher.stop)  # drains queued requests first
        resources = Resources(
            inference=inference,
            batcher=batcher,
            decode_pool=pool,
            http_client=client,
            keys=keys,
            issuer_check=issuer_check,
            validator=IssuerRouter(TokenValidator.from_settings(settings, keys), policy_validators),
            dpop=DPoPBinding.from_settings(settings, state, _store_error_counter(metrics)),
            state=state,
            drain=drain,
            metrics=metrics,
            limiter=_rate_limiter(settings, state, metrics),
        )
        app.state.served_classes = inference.classes  # the OpenAPI document's enum
        if metrics is not None:
            _describe(metrics, settings, inference, state)
        logger.info(
            "serving model %s %s from %s (%s on %s, sha256 %s): %s",
            inference.metadata.name,
            inference.metadata.version,
            inference.model_path.name,
            inference.precision,
            inference.backend,
            inference.sha256[:12],
            inference.precision_reason,
        )
        yield {"resources": resources}


def _start_issuer(
    settings: Settings, client: httpx.AsyncClient, stack: AsyncExitStack
) -> tuple[KeyCache, IssuerCheck]:
    """OAUTH2_ISSUER's key cache and issuer check, fed by one discovery fetch, started now
    (without delaying start-up: they retry until they succeed) and closed with ``stack``."""
    discovery = DiscoveryDocument(
        client, settings.discovery_uri, timeout_s=settings.jwks_fetch_timeout_s
    )
    keys = KeyCache.from_settings(settings, client, discovery)
    stack.push_async_callback(keys.aclose)
    keys.start()
    issuer_check = IssuerCheck.from_settings(settings, client, discovery)
    stack.push_async_callback(issuer_check.aclose)
    issuer_check.start()
    return keys, issuer_check


def _start_policy_issuers(
    settings: Settings,
    client: httpx.AsyncClient,
    state: InProcessState | RedisState,
    stack: AsyncExitStack,
) -> dict[str, GitHubTokenValidator]:
    """The trust policy's validators, their key caches started now and closed with ``stack``."""
    validators, caches = build_policy_validators(settings, client, state)
    for cache in caches:
        stack.push_async_callback(cache.aclose)
        cache.start()
    if validators:
        logger.info("trusted beside OAUTH2_ISSUER: %s", describe(validators))
    return validators


def _rate_limiter(
    settings: Settings, state: InProcessState | RedisState, metrics: Metrics | None
) -> RateLimiter | None:
    """On the store's own connection pool when there is one (one pool per process)."""
    return RateLimiter.from_settings(
        settings,
        None if isinstance(state, InProcessState) else state.pool,
        count_store_error=_store_error_counter(metrics),
        count_limited=metrics.rate_limited_total.inc if metrics is not None else None,
    )


def _describe(
    metrics: Metrics, settings: Settings, inference: Inference, state: InProcessState | RedisState
) -> None:
    """What /metrics says about this process: model, replica, classes counted, store state."""
    meta = inference.metadata
    metrics.set_model(
        name=meta.name,
        version=meta.version,
        sha256=inference.sha256,
        file=inference.model_path.name,
        precision=inference.precision,
        backend=inference.backend,
    )
    metrics.set_replica(settings.replica_id)
    metrics.count_classes(inference.classes)
    metrics.watch_state(lambda: state.health)


def _store_error_counter(metrics: Metrics | None) -> Callable[[str], None] | None:
    if metrics is None:
        return None
    return lambda use: metrics.state_store_errors_total.labels(use=use).inc()


async def _open_state(settings: Settings, stack: AsyncExitStack) -> InProcessState | RedisState:
    """The store STATE_URL names, closed by ``stack``; a Redis that may evict stops start-up."""
    state = open_state(settings)
    stack.push_async_callback(state.aclose)
    if isinstance(state, InProcessState):
        return state
    from cats_dogs_other.api.state_redis import StoreConfigError

    try:
        await state.check_config()
    except StoreConfigError as exc:
        error = StartupError(str(exc), setting="STATE_URL")
        record_failure(error)
        logger.error(error.sentence, extra={"event": "startup_failed"})
        raise error from None
    state.start()
    return state


async def _load_model(settings: Settings) -> Inference:
    """Resolve and load the model in a thread: model loading must not run on the event loop.

    A model that cannot be loaded stops the start-up with one sentence (see startup.py).
    """
    path, setting = settings.model_path, "MODEL_PATH"
    try:
        if settings.model_uri:
            from cats_dogs_other.api.model_source import resolve_model_uri

            setting = "MODEL_URI"
            path = await asyncio.to_thread(
                resolve_model_uri, settings.model_uri, settings.model_cache_dir
            )
        return await asyncio.to_thread(_build_inference, Path(path), settings)
    except (ModelLoadError, ModelSourceError) as exc:
        if settings.inference_precision == "int8" and INT8_FILENAME in str(exc):
            setting = "INFERENCE_PRECISION"
        fix = {
            "MODEL_URI": "check MODEL_URI and MLFLOW_TRACKING_URI",
            "INFERENCE_PRECISION": "or unset INFERENCE_PRECISION to serve the model in f32",
        }.get(setting, f"point MODEL_PATH at {TRAIN_HINT}, or unset it to serve the bundled model")
        error = StartupError(f"{setting}: {exc}; {fix}", setting=setting)
        record_failure(error)
        logger.error(error.sentence, extra={"event": "startup_failed"})
        raise error from exc


def _build_inference(path: Path, settings: Settings) -> Inference:
    digests = FileDigests()  # each model file is hashed once, whichever step asks first
    choice = settings.inference_backend
    precision = resolve_precision(path, choice, settings.inference_precision, digests=digests)
    backend = resolve_model(path, choice, precision, digests=digests)[0]
    if backend == "keras":  # TensorFlow is imported only for a Keras model
        configure_tf_threads(settings)
    limits = dataclasses.replace(DEFAULT_DECODE_LIMITS, max_jpeg_scans=settings.max_jpeg_scans)
    inference = Inference(  # the folder, so that precision_reason says why
        path,
        max_pixels=settings.max_image_pixels,
        min_side=settings.min_image_side,
        decode_limits=limits,
        warmup=False,
        backend=backend,
        threads=_runtime_threads(backend, settings),
        precision=settings.inference_precision,
        digests=digests,
    )
    # Every batch shape the batcher can form (once each), so the first busy seconds are not
    # ~20% slower.
    inference.warmup(range(1, settings.batch_max_size + 1))
    return inference


def _runtime_threads(backend: str, settings: Settings) -> int | None:
    """ONNX Runtime (and TensorFlow) run each lane's batch on the threads of the lane that
    called, so it gets one lane's share. OpenVINO compiles one stream (see its backend), which
    runs one request at a time: it serves one lane (:func:`_lanes`) with every lane's threads."""
    threads = settings.inference_threads
    if backend == "openvino" and threads:
        return threads * settings.inference_lanes
    return threads


def _lanes(backend: str, settings: Settings) -> int:
    """One lane on OpenVINO's single stream: more would queue there, and the batcher would
    split each wave into batches that run one after the other."""
    return 1 if backend == "openvino" else settings.inference_lanes


def configure_tf_threads(settings: Settings) -> None:
    """Must run before TensorFlow's first op; a second app in one process keeps the first's."""
    intra, inter = settings.tf_intra_op_threads, settings.tf_inter_op_threads
    if not intra and not inter:
        return
    try:
        configure_threads(intra_op=intra, inter_op=inter)
    except RuntimeError:
        logger.warning("TensorFlow already initialised: TF_*_THREADS ignored in this process")


def _install_metrics(app: FastAPI) -> None:
    """Prometheus: per-app registry, middleware and GET /metrics."""
    from cats_dogs_other.api.metrics import install_metrics

    metrics = Metrics()
    app.state.metrics = metrics
    install_metrics(app, metrics)


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The generated document, with the issuer's token URL and the required scope filled in."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
    )
    scheme = schema.get("components", {}).get("securitySchemes", {}).get(SCHEME_NAME)
    if scheme is not None:
        flow = scheme["flows"]["clientCredentials"]
        flow["tokenUrl"] = settings.swagger_token_url
        flow["scopes"] = {settings.oauth2_scope: "Classify images"}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for requirement in operation.get("security", []):
                if SCHEME_NAME in requirement:
                    requirement[SCHEME_NAME] = [settings.oauth2_scope]
    classes = getattr(app.state, "served_classes", None)
    if classes is None:  # before start-up: do not cache a document without the model's classes
        return schema
    declare_classes(schema, classes)
    app.openapi_schema = schema
    return schema
