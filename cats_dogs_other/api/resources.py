"""What the lifespan owns (model, batcher, HTTP client, key cache, decode pool, state store).

The lifespan yields ``{"resources": Resources(...)}``; Starlette copies that into every request's
``request.state``, and the typed dependencies in :mod:`cats_dogs_other.api.dependencies` read it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from fastapi import Request
from kto.inference import Inference

from cats_dogs_other.api.auth.issuer_check import IssuerCheck
from cats_dogs_other.api.auth.issuers import IssuerRouter
from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.batching import MicroBatcher
from cats_dogs_other.api.dpop.binding import DPoPBinding
from cats_dogs_other.api.draining import Drain
from cats_dogs_other.api.metrics import Metrics
from cats_dogs_other.api.rate_limits import RateLimiter
from cats_dogs_other.api.settings import Settings
from cats_dogs_other.api.state import StateStore


@dataclass(frozen=True, slots=True)
class Resources:
    inference: Inference
    batcher: MicroBatcher
    decode_pool: ThreadPoolExecutor
    http_client: httpx.AsyncClient
    keys: KeyCache
    issuer_check: IssuerCheck
    validator: IssuerRouter
    dpop: DPoPBinding
    state: StateStore
    drain: Drain
    metrics: Metrics | None = None
    limiter: RateLimiter | None = None  # None: no RATE_LIMIT configured


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_resources(request: Request) -> Resources:
    resources: Resources = request.state.resources
    return resources
