"""A real token for the load generators, from the development issuer on loopback.

``python -m cats_dogs_other.dev_issuer`` runs on a free port and is asked for a token with the
client-credentials grant, like any client would; the API under test validates it through
discovery and JWKS over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.procs import Server, start
from cats_dogs_other.core.dev import DEV_AUDIENCE, DEV_CLIENT_ID, DEV_CLIENT_SECRET
from cats_dogs_other.loopback import LOOPBACK, free_port

AUDIENCE = DEV_AUDIENCE


@dataclass
class Issuer:
    url: str
    token: str
    server: Server

    def stop(self) -> None:
        self.server.stop()


def start_issuer(log_dir: Path, token_lifetime_s: int = 7200) -> Issuer:
    port = free_port()
    server = start(
        "dev_issuer",
        ["-m", "cats_dogs_other.dev_issuer", "--host", LOOPBACK, "--port", str(port),
         "--audience", AUDIENCE, "--token-lifetime", str(token_lifetime_s),
         "--log-level", "WARNING"],
        {},
        port,
        log_dir,
    )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}/"
    try:
        server.wait_until("/.well-known/openid-configuration", timeout_s=60)
        response = httpx.post(
            url + "oauth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": DEV_CLIENT_ID,
                "client_secret": DEV_CLIENT_SECRET,
                "audience": AUDIENCE,
            },
            timeout=10,
            trust_env=False,
        )
        response.raise_for_status()
    except Exception:
        server.stop()
        raise
    return Issuer(url, str(response.json()["access_token"]), server)
