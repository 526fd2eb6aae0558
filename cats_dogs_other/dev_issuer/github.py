"""An offline stand-in for GitHub Actions' OIDC token service. NOT FOR PRODUCTION.

Served by the development issuer under ``/github-actions`` with its OWN signing keys, so the
API trusts it as a second issuer exactly as it would trust ``token.actions.githubusercontent.com``:

* ``GET /github-actions/.well-known/openid-configuration`` and ``/.well-known/jwks``;
* the Actions runtime endpoint a job calls: ``GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD``
  with ``Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`` -> ``{"value": "<jwt>"}``, for
  the configured job (the stand-in's default repository unless ``DEV_ISSUER_GITHUB_JOB`` says);
* ``POST /github-actions/mint`` (loopback only): any claims, per request, for tests.

Claims are shaped like GitHub's (same names; ``nbf`` backdated 10 minutes, ``exp`` 5 minutes
after ``iat``), with ``sub`` in the classic name format or the id format.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from joserfc import jwt

from cats_dogs_other.dev_issuer.keys import ALGORITHM, KeyRing

PREFIX = "/github-actions"
REQUEST_TOKEN = "dev-actions-request-token"  # noqa: S105 - a published development value
LIFETIME_S = 300
NBF_BACKDATE_S = 600

# The stand-in's default job: what `make run` trusts.
DEFAULT_JOB: dict[str, Any] = {
    "repository": "octo-org/octo-repo",
    "repository_id": "123456789",
    "repository_owner": "octo-org",
    "repository_owner_id": "987654",
    "repository_visibility": "private",
    "ref": "refs/heads/main",
    "ref_type": "branch",
    "ref_protected": "true",
    "sha": "5f0c5a1e0c1d0a0b2d4e6f8a9b7c5d3e1f2a4b6c",
    "workflow": "classify",
    "workflow_path": ".github/workflows/classify.yml",
    "event_name": "push",
    "runner_environment": "github-hosted",
    "actor": "octocat",
    "actor_id": "583231",
    "run_id": "1",
    "run_number": "1",
    "run_attempt": "1",
}

SubFormat = Literal["name", "ids"]


def subject(claims: Mapping[str, Any], sub_format: SubFormat) -> str:
    """GitHub's ``sub``: ``repo:OWNER/REPO:CONTEXT`` or, by ids, ``repository_owner_id:...``."""
    environment = claims.get("environment")
    if environment:
        context = f"environment:{environment}"
    elif str(claims.get("event_name", "")).startswith("pull_request"):
        context = "pull_request"
    else:
        context = f"ref:{claims.get('ref')}"
    if sub_format == "ids":
        return (
            f"repository_owner_id:{claims.get('repository_owner_id')}:"
            f"repository_id:{claims.get('repository_id')}:{context}"
        )
    return f"repo:{claims.get('repository')}:{context}"


def job_claims(
    issuer: str,
    audience: str,
    job: Mapping[str, Any] | None = None,
    *,
    now: int | None = None,
    sub_format: SubFormat = "name",
) -> dict[str, Any]:
    """The claim set of a GitHub Actions ID token for ``job`` (default: :data:`DEFAULT_JOB`).

    ``job`` overrides the defaults; a value of None removes the claim. ``workflow_path``
    builds ``workflow_ref`` and ``job_workflow_ref`` unless the job gives them itself.
    """
    now = int(time.time()) if now is None else now
    merged = {**DEFAULT_JOB, **(job or {})}
    path = merged.pop("workflow_path", None)
    location = f"{merged.get('repository')}/{path}@{merged.get('ref')}"
    merged.setdefault("workflow_ref", location)
    merged.setdefault("job_workflow_ref", location)
    merged.setdefault("workflow_sha", merged.get("sha"))
    merged.setdefault("job_workflow_sha", merged.get("sha"))
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "sub": subject(merged, sub_format),
        "aud": audience,
        **merged,
        "iss": issuer,
        "nbf": now - NBF_BACKDATE_S,
        "exp": now + LIFETIME_S,
        "iat": now,
    }
    if "sub" in (job or {}):
        claims["sub"] = (job or {})["sub"]
    return {name: value for name, value in claims.items() if value is not None}


class GitHubTokenService:
    """Signs GitHub-shaped ID tokens with its own key ring."""

    def __init__(self, keyring: KeyRing, *, issuer: str, job: Mapping[str, Any]) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.job = dict(job)

    def sign(self, claims: Mapping[str, Any]) -> str:
        key = self.keyring.current
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}
        return jwt.encode(header, dict(claims), key, algorithms=[ALGORITHM])

    def token(
        self,
        audience: str,
        overrides: Mapping[str, Any] | None = None,
        *,
        sub_format: SubFormat = "name",
    ) -> str:
        job = {**self.job, **(overrides or {})}
        return self.sign(job_claims(self.issuer, audience, job, sub_format=sub_format))

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/.well-known/jwks",
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": sorted({*job_claims(self.issuer, "x"), "environment"}),
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "scopes_supported": ["openid"],
        }
