"""Configuration of the development issuer. NOT FOR PRODUCTION.

Every default can be overridden by a ``DEV_ISSUER_*`` environment variable, so the same
module serves ``make run``, the end-to-end tests (free ports) and a container.
"""

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cats_dogs_other.core.dev import (
    DEV_AUDIENCE,
    DEV_CLIENT_ID,
    DEV_CLIENT_SECRET,
    DEV_ISSUER_PORT,
    NO_SCOPE_CLIENT_ID,
    NO_SCOPE_CLIENT_SECRET,
    SCOPE,
)
from cats_dogs_other.core.hosts import LOOPBACK, connect_host, is_secure_url


class ClientConfig(BaseModel):
    """A machine-to-machine client, like an Auth0 M2M application with its client grant."""

    secret: Annotated[str, Field(min_length=1)]
    scopes: list[str] = Field(default_factory=list)


def default_clients() -> dict[str, ClientConfig]:
    """One client that may classify images and one that may not (to exercise 403)."""
    return {
        DEV_CLIENT_ID: ClientConfig(secret=DEV_CLIENT_SECRET, scopes=[SCOPE]),
        NO_SCOPE_CLIENT_ID: ClientConfig(secret=NO_SCOPE_CLIENT_SECRET, scopes=[]),
    }


class IssuerSettings(BaseSettings):
    """Settings of the development issuer; built once, in the app factory or the CLI."""

    model_config = SettingsConfigDict(env_prefix="DEV_ISSUER_", extra="ignore")

    host: str = LOOPBACK
    port: Annotated[int, Field(ge=0, le=65535)] = DEV_ISSUER_PORT
    url: str | None = Field(
        default=None,
        description="Public issuer URL (the `iss` claim); defaults to http://HOST:PORT/.",
    )
    audience: str = DEV_AUDIENCE
    clients: dict[str, ClientConfig] = Field(default_factory=default_clients)
    token_lifetime_s: Annotated[int, Field(gt=0)] = 86_400
    keys_published: Annotated[int, Field(ge=2)] = 2
    key_size: Annotated[int, Field(ge=2048)] = 2048
    dpop_replay_cache_size: Annotated[int, Field(ge=1)] = 10_000
    log_level: str = "INFO"
    # The GitHub Actions stand-in (cats_dogs_other.dev_issuer.github): the job whose ID tokens
    # the runtime endpoint mints (claims over the default job), and the job's request token.
    github_job: dict[str, Any] = Field(default_factory=dict)
    github_request_token: Annotated[str, Field(min_length=16)] = "dev-actions-request-token"  # noqa: S105 - a published development value

    @field_validator("url")
    @classmethod
    def _trailing_slash(cls, url: str | None) -> str | None:
        # Auth0's `iss` always ends with "/" and resource servers compare it verbatim.
        if url is None:
            return None
        return url if url.endswith("/") else url + "/"

    @model_validator(mode="after")
    def _secure_or_loopback(self) -> "IssuerSettings":
        if self.url is None and self.port == 0:
            raise ValueError("port 0 needs an explicit issuer URL (DEV_ISSUER_URL or --issuer)")
        # The same rule as the API: plain http is only acceptable on loopback.
        if not is_secure_url(self.issuer):
            raise ValueError(f"issuer URL {self.issuer} must use https unless it is on loopback")
        return self

    @property
    def issuer(self) -> str:
        """The `iss` claim, with its trailing slash, as clients must address it."""
        if self.url:
            return self.url
        host = connect_host(self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "oauth/token"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + ".well-known/jwks.json"

    @property
    def github_issuer(self) -> str:
        """The GitHub stand-in's ``iss``: no trailing slash, as GitHub's has none."""
        return self.issuer + "github-actions"

    @property
    def actions_id_token_request_url(self) -> str:
        """What a job finds in ``ACTIONS_ID_TOKEN_REQUEST_URL`` (clients append ``&audience=``)."""
        return self.github_issuer + "/idtoken?api-version=2.0"
