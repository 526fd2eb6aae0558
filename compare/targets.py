"""The validators compared, each started as its own process on a free loopback port.

This API runs exactly as deployed (``boot.py`` through the reliability harness's ``Api``) from
the project's environment; the libraries run their app from ``compare/servers/`` under uvicorn
in the throwaway environment. All are configured for the same TLS issuer and audience and trust
its throwaway CA through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from cats_dogs_other.loopback import LOOPBACK, Child, free_port
from compare.issuer import TestIssuer
from reliability.stack import Api, log_file

START_TIMEOUT_S = 60.0


class Target(Protocol):
    name: str
    library: str

    def running(self, issuer: TestIssuer, *, ready: bool) -> contextlib.AbstractContextManager[str]:
        """Start the validator; yields its base URL; stops it on exit."""
        ...


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH2_", "JWKS_", "AUTH0_"))}
    env.update({"PYTHONUNBUFFERED": "1", "NO_PROXY": "*", "no_proxy": "*"}, **extra)
    return env


@dataclass
class LibraryTarget:
    """A library's app from ``compare/servers`` under uvicorn in the throwaway environment."""

    name: str
    library: str
    module: str
    settings: Callable[[TestIssuer], dict[str, str]]
    python: Path

    @contextlib.contextmanager
    def running(self, issuer: TestIssuer, *, ready: bool) -> Iterator[str]:
        port = free_port()
        argv = [
            str(self.python), "-m", "uvicorn", f"compare.servers.{self.module}:app",
            "--host", LOOPBACK, "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
        env = _env({"SSL_CERT_FILE": str(issuer.ca_file), **self.settings(issuer)})
        name = f"compare-{self.module}"
        process = Child(name, argv, env=env, log_path=log_file(name)).start()
        try:
            url = f"http://{LOOPBACK}:{port}"
            process.wait_http(url + "/health", timeout_s=START_TIMEOUT_S, interval_s=0.1)
            yield url
        finally:
            process.stop(grace_s=5)


@dataclass
class ThisApi:
    """``python boot.py`` with the given model, as deployed."""

    model: Path
    name: str = "this API"
    library: str = "cats_dogs_other.api on joserfc"

    @contextlib.contextmanager
    def running(self, issuer: TestIssuer, *, ready: bool) -> Iterator[str]:
        # Api reads only the issuer's url; its stop() is the harness's SIGTERM-then-SIGKILL.
        api = Api(issuer, self.model, SSL_CERT_FILE=str(issuer.ca_file))  # type: ignore[arg-type]
        api.start(wait_ready=ready)
        try:
            yield api.url
        finally:
            api.process.stop()


def library_targets(python: Path) -> list[LibraryTarget]:
    def oauth2_variables(i: TestIssuer) -> dict[str, str]:
        return {
            "OAUTH2_ISSUER": i.url,
            "OAUTH2_AUDIENCE": i.audience,
            "OAUTH2_JWKS_URI": ".well-known/jwks.json",
        }

    def auth0(i: TestIssuer) -> dict[str, str]:
        return {"AUTH0_DOMAIN": urlsplit(i.url).netloc, "AUTH0_AUDIENCE": i.audience}

    def pyjwt(i: TestIssuer) -> dict[str, str]:
        return {"ISSUER": i.url, "AUDIENCE": i.audience, "JWKS_URL": i.jwks_url}

    return [
        LibraryTarget(
            "oidc-jwt-validation",
            "the course's validator",
            "oidc_jwt_validation_app",
            oauth2_variables,
            python,
        ),
        LibraryTarget(
            "auth0-fastapi-api", "Auth0's FastAPI SDK", "auth0_fastapi_api_app", auth0, python
        ),
        LibraryTarget("PyJWT", "a tutorial: PyJWKClient + jwt.decode", "pyjwt_app", pyjwt, python),
    ]
