"""Loopback issuers for the trust-policy tests: real HTTP, keys made in the tests, requests counted.

:class:`LoopbackIssuers` serves several issuers' discovery documents and key sets from one
:func:`~tests.json_server.json_server` on 127.0.0.1 (the documents map a path to its JSON body;
any other path answers 404) and records every path asked for, so a test can prove that a token
naming an unknown issuer caused no request at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from cats_dogs_other.dev_issuer.github import job_claims
from tests.json_server import json_server


@dataclass
class LoopbackIssuers:
    """Documents by path, served by :func:`loopback_issuers` at ``url`` (127.0.0.1)."""

    url: str
    documents: dict[str, object]
    requests: list[str]

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def publish(self, issuer: str, keys: list[RSAKey], *, jwks_path: str) -> None:
        """Discovery for ``issuer`` (under this server) naming ``jwks_path`` on this server."""
        path = issuer.removeprefix(self.url).rstrip("/")
        self.documents[f"{path}/.well-known/openid-configuration"] = {
            "issuer": issuer,
            "jwks_uri": self.url + jwks_path,
        }
        self.documents[jwks_path] = {"keys": [key.as_dict(private=False) for key in keys]}


@contextmanager
def loopback_issuers() -> Iterator[LoopbackIssuers]:
    """A :func:`~tests.json_server.json_server` that records the paths asked for."""
    documents: dict[str, object] = {}
    requests: list[str] = []
    with json_server(documents, requests) as url:
        yield LoopbackIssuers(url, documents, requests)


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


def sign(key: RSAKey, claims: dict[str, Any], **header: Any) -> str:
    head = {"alg": "RS256", "kid": key.kid, "typ": "JWT", **header}
    return jwt.encode(head, claims, key, algorithms=["RS256"])


def github_token(key: RSAKey, issuer: str, audience: str, **job: Any) -> str:
    """A GitHub-shaped ID token (the dev issuer's claim builder) signed with ``key``.

    ``sub_format="ids"`` picks the id-based ``sub``; other keywords override job claims (None
    removes one; ``aud``, ``iat``, ``nbf``, ``exp``, ``jti`` and ``iss`` too).
    """
    sub_format = job.pop("sub_format", "name")
    names = ("aud", "iat", "nbf", "exp", "jti", "iss")
    timing: dict[str, Any] = {name: job.pop(name) for name in names if name in job}
    claims = job_claims(issuer, audience, job, sub_format=sub_format)
    claims.update(timing)
    return sign(key, {k: v for k, v in claims.items() if v is not None})
