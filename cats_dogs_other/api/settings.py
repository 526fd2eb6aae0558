"""The one configuration object, read from the environment (course names) by pydantic-settings.

Built by the app factory or ``boot.py``, never at import time, so tests pass their own.
Misconfiguration stops the server at start-up with a one-line reason (:class:`ConfigError`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urljoin, urlsplit

from kto.inference import DEFAULT_DECODE_LIMITS, DEFAULT_MAX_PIXELS, MIN_CLASSIFIABLE_SIDE
from kto.inference.backends import BackendChoice
from kto.inference.cpus import plan_threads
from kto.inference.model import PrecisionChoice
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cats_dogs_other.api import batching
from cats_dogs_other.api.auth.trust_policy import TrustPolicy, TrustPolicyError, load_trust_policy
from cats_dogs_other.api.limit_syntax import check_limit, parse_overrides
from cats_dogs_other.core.dev import DEV_TOKEN_PATH
from cats_dogs_other.core.dpop import DPOP_ALGORITHMS
from cats_dogs_other.core.hosts import is_loopback, is_secure_url
from cats_dogs_other.core.paths import REPO_ROOT

DEFAULT_MODEL_PATH = REPO_ROOT / "cats_dogs_other" / "model"
DEFAULT_MODEL_CACHE_DIR = REPO_ROOT / ".model-cache"
MiB = 1024 * 1024
STATE_URL_SCHEMES = frozenset({"redis", "rediss", "unix"})
PLANNED = "when unset, usable CPUs (affinity, cgroup quota) / WORKERS"

# Asymmetric JWS algorithms only: with HMAC the verifying key is the signing key, and a public
# JWKS key used as an HMAC secret is the classic algorithm-confusion attack.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class ConfigError(Exception):
    """The environment does not describe a server that can start; the message is one line.

    ``names`` are the environment variables at fault, so a caller can say how to fix them.
    """

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.names = names


def _require_safe_url(url: str, what: str) -> None:
    if is_secure_url(url):
        return
    prefix = f"{what} " if what else ""
    raise ValueError(f"{prefix}must be an https URL (plain http only on loopback), got {url!r}")


class Settings(BaseSettings):
    """Every knob of the API. Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", frozen=True, protected_namespaces=("settings_",)
    )

    # --- OAuth2 / OpenID Connect (no switch turns authentication off) ---
    oauth2_issuer: str = Field(description="e.g. https://TENANT.eu.auth0.com/ (the token's iss)")
    oauth2_audience: str = Field(description="the API identifier; must be in the token's aud")
    oauth2_jwks_uri: str | None = Field(
        default=None, description="relative to the issuer, absolute, or unset for discovery"
    )
    oauth2_scope: str = "get::prediction"
    oauth2_algorithms: Annotated[tuple[str, ...], NoDecode] = ("RS256",)
    oauth2_leeway_s: int = Field(default=60, ge=0, le=600)
    jwks_cache_ttl_s: float = Field(default=600.0, gt=0)
    jwks_refresh_cooldown_s: float = Field(default=30.0, ge=0)
    jwks_fetch_timeout_s: float = Field(default=5.0, gt=0)
    # Read once, here: the field holds the parsed TrustPolicy (see trust_policy.py).
    trust_policy_file: Annotated[Any, NoDecode] = Field(
        default=None,
        description="YAML file of issuers trusted beside OAUTH2_ISSUER (GitHub Actions OIDC); "
        "docs/github-actions.md",
    )
    dev_token_proxy_url: str | None = Field(
        default=None,
        description="development only: the dev issuer's token endpoint, relayed at "
        "POST /dev/oauth/token so Swagger's token request stays on the API's origin",
    )

    # --- DPoP sender-constrained tokens (RFC 9449; see cats_dogs_other.api.dpop.binding) ---
    dpop_mode: Literal["allowed", "required", "disabled"] = "allowed"
    dpop_algorithms: Annotated[tuple[str, ...], NoDecode] = DPOP_ALGORITHMS
    dpop_iat_window_s: int = Field(default=60, ge=1, le=600)
    dpop_replay_cache_size: int = Field(default=100_000, ge=1)
    dpop_public_url: str | None = Field(
        default=None, description="scheme://host[:port] clients call, when a proxy rewrites it"
    )
    dpop_nonces: bool = False
    dpop_nonce_secret: SecretStr | None = None
    dpop_nonce_lifetime_s: int = Field(default=300, ge=10, le=3600)

    # --- shared state (see cats_dogs_other.api.state) and per-client limits ---
    state_url: SecretStr | None = Field(
        default=None,
        description="unset = in-process state (one process); redis://, rediss:// or unix:// = "
        "shared by every worker and replica",
    )
    state_timeout_ms: int = Field(default=50, ge=1, le=60_000)
    state_key_prefix: str = Field(default="cdo:", min_length=1, max_length=64)
    state_clock_skew_s: int = Field(default=5, ge=0, le=600)
    rate_limit: str | None = Field(
        default=None, description="images per client, e.g. 600/minute; unset = no limit"
    )
    rate_limits_by_client: str | None = Field(
        default=None, description='JSON object, client key -> limit: {"oauth2:abc": "60/minute"}'
    )

    # --- model ---
    model_path: Path = DEFAULT_MODEL_PATH  # a model folder, or a .onnx / .keras / .h5 file
    model_uri: str | None = None
    model_cache_dir: Path = DEFAULT_MODEL_CACHE_DIR
    # auto: a folder's exported model.onnx (ONNX Runtime) when it has one, else its model.keras
    inference_backend: BackendChoice = "auto"
    # auto: the folder's quantized model.int8.onnx on ONNX Runtime when it has one, else f32;
    # f32 or int8 pins one (docs/performance.md has the trade-off and the rule)
    inference_precision: PrecisionChoice = "auto"

    # --- uploads ---
    max_upload_bytes: int = Field(default=10 * MiB, ge=1)
    max_batch_files: int = Field(default=32, ge=1)
    max_batch_bytes: int = Field(default=32 * MiB, ge=1)
    max_image_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    # an image with a shorter side gets a 422 instead of a confident guess
    min_image_side: int = Field(default=MIN_CLASSIFIABLE_SIDE, ge=1)
    max_jpeg_scans: int = Field(default=DEFAULT_DECODE_LIMITS.max_jpeg_scans, ge=1)
    # the whole body, from its first read: 10 MiB at about 1.4 Mbit/s
    upload_timeout_s: float = Field(default=60.0, gt=0)

    # --- performance (defaults measured by bench/, kept next to the batcher) ---
    batch_max_size: int = Field(default=batching.DEFAULT_MAX_BATCH_SIZE, ge=1)
    batch_max_wait_ms: float = Field(default=batching.DEFAULT_MAX_WAIT_MS, ge=0)
    queue_max_size: int = Field(default=batching.DEFAULT_QUEUE_SIZE, ge=1)
    inference_timeout_s: float = Field(default=batching.DEFAULT_TIMEOUT_S, gt=0)
    # unset thread counts come from the thread plan (_plan_threads)
    decode_threads: int = Field(
        default_factory=lambda: plan_threads().decode_threads, ge=1, description=PLANNED
    )
    inference_threads: int | None = Field(
        default=None, ge=0, description="the runtime's intra-op threads (0: its own); " + PLANNED
    )
    inference_lanes: int = Field(
        default_factory=lambda: plan_threads().lanes, ge=1, le=64,
        description="inference threads, each running its own batch on INFERENCE_THREADS "
        "intra-op threads; 1 when unset (kto.inference.cpus)",
    )  # fmt: skip
    tf_intra_op_threads: int | None = Field(default=None, ge=0)
    tf_inter_op_threads: int | None = Field(default=None, ge=0)

    # --- process ---
    workers: int = Field(default=1, ge=1)
    graceful_timeout_s: int = Field(default=30, ge=1)  # uvicorn timeout_graceful_shutdown
    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on all interfaces
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = "INFO"
    replica_id: str = Field(
        default_factory=socket.gethostname, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"
    )
    shutdown_drain_s: float = Field(default=0.0, ge=0, le=300)

    @field_validator("oauth2_issuer")
    @classmethod
    def _issuer_is_safe(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        _require_safe_url(value, "")
        return value

    @field_validator("oauth2_audience", "oauth2_scope")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("trust_policy_file", mode="before")
    @classmethod
    def _load_trust_policy(cls, value: Any, info: ValidationInfo) -> TrustPolicy | None:
        if value is None or isinstance(value, TrustPolicy):
            return value
        if not isinstance(value, str | Path) or not str(value).strip():
            raise ValueError("must name a YAML file")
        audience, issuer = info.data.get("oauth2_audience"), info.data.get("oauth2_issuer")
        if not audience or not issuer:
            raise ValueError("needs OAUTH2_ISSUER and OAUTH2_AUDIENCE set and valid")
        try:
            return load_trust_policy(
                Path(str(value).strip()), default_audience=audience, oauth2_issuer=issuer
            )
        except TrustPolicyError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("oauth2_algorithms", "dpop_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @field_validator("oauth2_algorithms", "dpop_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not value:
            allowed = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            raise ValueError(f"unsupported {bad or 'empty list'}; allowed: {allowed}")
        return value

    @field_validator("dpop_nonce_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 characters (e.g. openssl rand -hex 32)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @model_validator(mode="before")
    @classmethod
    def _plan_threads(cls, data: Any) -> Any:
        """Unset thread counts follow the thread plan (:mod:`kto.inference.cpus`): the CPUs
        this process may use (affinity, cgroup quota), shared between the workers, so a pod
        limited to 2 CPUs on a 64-core node does not start 64 threads per pool.
        """
        if not isinstance(data, dict):
            return data
        try:
            lanes = data.get("inference_lanes")
            plan = plan_threads(
                int(data.get("workers", 1)), lanes=None if lanes is None else int(lanes)
            )
        except (TypeError, ValueError):
            return data  # the field's own validation reports it
        data = {**data}
        data.setdefault("decode_threads", plan.decode_threads)
        data.setdefault("inference_threads", plan.intra_op_threads)
        data.setdefault("inference_lanes", plan.lanes)
        # TensorFlow's intra-op pool is one per process, shared by the lanes: the whole share
        data.setdefault("tf_intra_op_threads", plan.decode_threads)
        if plan.workers > 1:
            data.setdefault("tf_inter_op_threads", plan.inter_op_threads)
        return data

    @model_validator(mode="after")
    def _jwks_uri_is_safe(self) -> Settings:
        if self.oauth2_jwks_uri:
            _require_safe_url(self.jwks_uri or "", "OAUTH2_JWKS_URI")
        return self

    @model_validator(mode="after")
    def _dev_token_proxy_is_local(self) -> Settings:
        """The relay may only reach a development issuer on loopback that this API trusts."""
        url = self.dev_token_proxy_url
        if url and not (url.startswith(self.issuer_base) and is_loopback(urlsplit(url).hostname)):
            raise ValueError(
                f"DEV_TOKEN_PROXY_URL must be the development issuer's token endpoint on "
                f"loopback, under OAUTH2_ISSUER {self.issuer_base} (got {url!r}); unset it "
                "outside development"
            )
        return self

    @model_validator(mode="after")
    def _dpop_is_complete(self) -> Settings:
        if self.dpop_nonces and self.dpop_nonce_secret is None:
            raise ValueError(
                "DPOP_NONCES=true needs DPOP_NONCE_SECRET (32+ characters, the same on every "
                "worker and replica)"
            )
        if self.dpop_public_url:
            _require_safe_url(self.dpop_public_url, "DPOP_PUBLIC_URL")
        return self

    @field_validator("state_url")
    @classmethod
    def _state_url_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = urlsplit(value.get_secret_value().strip()).scheme.lower()
        if scheme not in STATE_URL_SCHEMES:
            raise ValueError(
                f"must be a redis://, rediss:// or unix:// URL (got scheme {scheme!r}); "
                "unset it for in-process state"
            )
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        check_limit(value)
        return value.strip()

    @field_validator("rate_limits_by_client")
    @classmethod
    def _overrides_parse(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_overrides(value)
        return value

    @model_validator(mode="after")
    def _single_use_is_shared(self) -> Settings:
        policy = self.trust_policy
        if policy and policy.single_use and self.workers > 1 and self.state_url is None:
            raise ValueError(
                f"TRUST_POLICY_FILE has single_use issuers but WORKERS={self.workers} and no "
                "STATE_URL: each process would accept a token once (set STATE_URL=redis://... "
                "or WORKERS=1)"
            )
        return self

    @model_validator(mode="after")
    def _limits_are_shared(self) -> Settings:
        limited = self.rate_limit or self.rate_limits_by_client
        if self.workers > 1 and self.state_url is None and limited:
            raise ValueError(
                f"RATE_LIMIT with WORKERS={self.workers} needs STATE_URL (each process would "
                "count on its own, multiplying the limit): set STATE_URL=redis://... or WORKERS=1"
            )
        return self

    @property
    def client_limits(self) -> dict[str, str]:
        """``RATE_LIMITS_BY_CLIENT`` as a mapping (validated at start-up)."""
        return parse_overrides(self.rate_limits_by_client) if self.rate_limits_by_client else {}

    @property
    def trust_policy(self) -> TrustPolicy | None:
        policy: TrustPolicy | None = self.trust_policy_file
        return policy

    @property
    def issuer_base(self) -> str:
        """The issuer with one trailing slash, for joining relative URLs."""
        return self.oauth2_issuer if self.oauth2_issuer.endswith("/") else self.oauth2_issuer + "/"

    @property
    def jwks_uri(self) -> str | None:
        """Absolute JWKS URL, or None when it must be discovered."""
        if not self.oauth2_jwks_uri:
            return None
        return urljoin(self.issuer_base, self.oauth2_jwks_uri.strip())

    @property
    def discovery_uri(self) -> str:
        return urljoin(self.issuer_base, ".well-known/openid-configuration")

    @property
    def token_url(self) -> str:
        """Auth0's token endpoint, declared in the OpenAPI document for Swagger's Authorize."""
        return self.issuer_base + "oauth/token"

    @property
    def swagger_token_url(self) -> str:
        """Where Swagger's Authorize sends the token request: the relay on this API's own
        origin when it is configured, else the issuer's token endpoint."""
        return DEV_TOKEN_PATH if self.dev_token_proxy_url else self.token_url


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; turn pydantic's multi-line report into a one-line ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        names = tuple(".".join(str(p) for p in e["loc"]).upper() for e in exc.errors())
        raise ConfigError(_one_line(exc), tuple(n for n in names if n)) from None


def _one_line(exc: ValidationError) -> str:
    reasons = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]).upper()
        message = "is required" if error["type"] == "missing" else error["msg"]
        message = message.removeprefix("Value error, ")
        reasons.append(f"{name} {message}" if name else message)
    return "invalid configuration: " + "; ".join(reasons)
