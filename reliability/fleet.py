"""A fleet on loopback for the fault checks: the issuer, redis-server, N replicas and HAProxy.

The same :class:`~cats_dogs_other.replicas.Cluster` as ``make run-replicas``, with every process
logging to a file under ``.reliability/logs`` and two machine-to-machine clients at the
issuer: ``noisy-client`` (its own, low rate limit) and ``steady-client`` (the default limit).
Used by ``python -m reliability replicas`` and by ``tests/reliability/test_replicas.py``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
from kto.client.dpop import DPoPKey

from cats_dogs_other.loopback import ROOT, Child
from cats_dogs_other.replicas import Cluster
from reliability.stack import AUDIENCE, Issuer, child, child_env

NOISY, STEADY = "noisy-client", "steady-client"
SECRET = "fleet-secret"  # noqa: S105 - a loopback-only test issuer's client secret
SCOPES = ["get::prediction"]


@dataclass(frozen=True)
class Limits:
    """How the fleet is configured: replica count, limits and the store's timeout."""

    replicas: int
    noisy_per_minute: int  # R: the noisy client's own limit
    steady_per_minute: int  # the default limit, the steady client's
    store_timeout_ms: int
    inference_timeout_s: float = 10.0


def fleet_issuer() -> Issuer:
    """The development issuer with the two clients of the fault checks."""
    clients = {name: {"secret": SECRET, "scopes": SCOPES} for name in (NOISY, STEADY)}
    return Issuer(env={"DEV_ISSUER_CLIENTS": json.dumps(clients)})


def log_child(name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
    return child(name, list(argv), env)


class Fleet:
    """Issuer + :class:`Cluster`, started on enter, every process stopped on exit."""

    def __init__(self, model_path: Path, limits: Limits, **api_env: object) -> None:
        self.limits = limits
        self.issuer = fleet_issuer()
        self.workdir = Path(tempfile.mkdtemp(prefix="cdo-fleet-"))
        self.model_path = model_path
        self.api_env = {k: str(v) for k, v in api_env.items()}
        self.cluster: Cluster | None = None

    def environment(self) -> dict[str, str]:
        limits = self.limits
        overrides = {self.client_key(NOISY): f"{limits.noisy_per_minute}/minute"}
        env = child_env(
            {
                "OAUTH2_ISSUER": self.issuer.url,
                "OAUTH2_AUDIENCE": AUDIENCE,
                "MODEL_PATH": str(self.model_path),
                "LOG_LEVEL": "WARNING",
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "RATE_LIMIT": f"{limits.steady_per_minute}/minute",
                "RATE_LIMITS_BY_CLIENT": json.dumps(overrides),
                "STATE_TIMEOUT_MS": str(limits.store_timeout_ms),
                "INFERENCE_TIMEOUT_S": str(limits.inference_timeout_s),
                "INFERENCE_THREADS": "1",
                "DECODE_THREADS": "1",
            }
        )
        env.update(self.api_env)
        return env

    @staticmethod
    def client_key(client_id: str) -> str:
        """The rate limiter's key for a client: ``<issuer name>:<client id>`` (the OAUTH2_*
        issuer is named ``oauth2``)."""
        return f"oauth2:{client_id}"

    def __enter__(self) -> Self:
        self.issuer.__enter__()
        try:
            self.cluster = Cluster(
                replicas=self.limits.replicas,
                api_env=self.environment(),
                workdir=self.workdir,
                make_child=log_child,
                python=sys.executable,
                boot=ROOT / "boot.py",
                timeout_server_s=self.limits.inference_timeout_s + 5,
            )
            self.cluster.start(ready_timeout_s=240)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.cluster is not None:
                self.cluster.stop(grace_s=10)
        finally:
            self.issuer.__exit__(None, None, None)
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def c(self) -> Cluster:
        assert self.cluster is not None, "the fleet is not started"
        return self.cluster

    # --- credentials ----------------------------------------------------------------------
    def bearer(self, client_id: str = STEADY) -> str:
        return self.issuer.token(client_id, SECRET)

    def dpop_token(self, key: DPoPKey, client_id: str = STEADY) -> str:
        """A DPoP-bound access token for ``key``, requested with a proof as RFC 9449 says."""
        endpoint = httpx.URL(self.issuer.url + "oauth/token")
        body = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": SECRET,
            "audience": AUDIENCE,
        }
        response = httpx.post(
            endpoint,
            data=body,
            headers={"DPoP": key.proof("POST", endpoint)},
            timeout=10,
            trust_env=False,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])
