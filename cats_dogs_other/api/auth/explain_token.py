"""``python -m cats_dogs_other.api.auth.explain_token``: which policy rule accepts a token, or
why not.

For people writing a ``TRUST_POLICY_FILE``: paste a token (from a failing job's debug step, or
the development issuer's stand-in) on standard input; the command names the issuer entry and
the rule that would accept it, or the first check that fails, the same checks in the same order
as the API. The token is never echoed (only claim values are shown). No API runs: the keys are
fetched from the issuer (discovery or the entry's ``jwks_uri``) unless ``--jwks FILE`` is given.
``single_use`` cannot be checked offline and is only reported.

Exit status: 0 accepted, 1 refused, 2 usage error (no policy, unreadable files).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import httpx
from joserfc.jwk import Key

from cats_dogs_other.api.auth.github_policy import REQUIRED_CLAIMS, rule_checks
from cats_dogs_other.api.auth.github_tokens import GitHubTokenValidator, github_client_id
from cats_dogs_other.api.auth.issuers import policy_key_cache, unverified_issuer
from cats_dogs_other.api.auth.jwks import parse_jwks, usable_for
from cats_dogs_other.api.auth.trust_policy import TrustedIssuer
from cats_dogs_other.api.errors import ApiError, AuthError, InvalidTokenError
from cats_dogs_other.api.settings import ConfigError, Settings, load_settings

EXIT_ACCEPTED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
SHOWN_CLAIMS = (
    "iss",
    "aud",
    *REQUIRED_CLAIMS,
    "environment",
    "sub",
    "iat",
    "exp",
)


class FileKeys:
    """The keys of a JWKS file, chosen by ``kid`` and algorithm as the API does."""

    def __init__(self, path: Path, algorithms: Sequence[str]) -> None:
        self._keys = parse_jwks(json.loads(path.read_text(encoding="utf-8")), algorithms)

    async def get(self, kid: str, alg: str) -> Key:
        key = next((k for k in self._keys.get(kid, ()) if usable_for(k, alg)), None)
        if key is None:
            raise InvalidTokenError(f"the JWKS file has no {alg} key {kid!r}", reason="kid")
        return key


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cats_dogs_other.api.auth.explain_token",
        description="Read a token on standard input (never echoed) and say which trust-policy "
        "issuer and rule accept it, or the first check that fails.",
        epilog="Reads OAUTH2_ISSUER, OAUTH2_AUDIENCE and TRUST_POLICY_FILE from the environment "
        "like the API; --policy and --audience override them. Exit status: 0 accepted, "
        "1 refused, 2 usage error.",
    )
    parser.add_argument("--policy", type=Path, help="the policy file (default TRUST_POLICY_FILE)")
    parser.add_argument("--jwks", type=Path, help="a JWKS file instead of fetching the keys")
    parser.add_argument("--audience", help="the API's audience (default OAUTH2_AUDIENCE)")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.policy is not None:
        overrides["trust_policy_file"] = str(args.policy)
    if args.audience:
        overrides["oauth2_audience"] = args.audience
    settings = load_settings(**overrides)
    if settings.trust_policy is None:
        raise ConfigError("no trust policy: set TRUST_POLICY_FILE or pass --policy")
    return settings


async def explain(token: str, settings: Settings, jwks: Path | None, out: TextIO) -> int:
    policy = settings.trust_policy
    assert policy is not None
    try:
        issuer = unverified_issuer(token)
    except AuthError as exc:
        print(f"refused: {exc.message}", file=out)
        return EXIT_REFUSED
    entry = next((e for e in policy.issuers if e.issuer == issuer), None)
    if entry is None:
        trusted = ", ".join(repr(e.issuer) for e in policy.issuers)
        print(f"refused: no policy issuer is exactly {issuer!r} (trusted: {trusted})", file=out)
        return EXIT_REFUSED
    print(f"issuer: {entry.name} ({entry.issuer})", file=out)
    async with httpx.AsyncClient(follow_redirects=False) as client:
        keys = (
            FileKeys(jwks, entry.algorithms) if jwks else policy_key_cache(entry, settings, client)
        )
        validator = GitHubTokenValidator(keys, entry, state=None, leeway_s=settings.oauth2_leeway_s)
        try:
            claims = await validator.verified_claims(token)
            for name in SHOWN_CLAIMS:
                if name in claims:
                    print(f"  {name}: {claims[name]!r}", file=out)
            validator.check_token(claims, github_client_id(claims))
        except ApiError as exc:
            print(f"refused (401/503): {exc.message}", file=out)
            return EXIT_REFUSED
    return explain_rules(claims, entry, settings.oauth2_scope, out)


def explain_rules(claims: dict, entry: TrustedIssuer, scope: str, out: TextIO) -> int:
    missing = [name for name in REQUIRED_CLAIMS if not isinstance(claims.get(name), str | int)]
    if missing:
        print(f"refused (403): the token lacks {', '.join(missing)}", file=out)
        return EXIT_REFUSED
    for rule in entry.rules:
        failed = next((what for what, ok in rule_checks(rule, claims) if not ok), None)
        if failed is None:
            granted = ", ".join(sorted(rule.scopes))
            print(f"accepted by rule {rule.index} (scopes: {granted})", file=out)
            if scope not in rule.scopes:
                print(f"but the API requires {scope!r}: 403 insufficient_scope", file=out)
                return EXIT_REFUSED
            if entry.single_use:
                print("single_use: a second use would be refused (not checked here)", file=out)
            return EXIT_ACCEPTED
        print(f"rule {rule.index}: {failed}", file=out)
    print("refused (403): no rule matches", file=out)
    return EXIT_REFUSED


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load(args)
    except ConfigError as exc:
        print(f"explain-token: {exc}", file=sys.stderr)
        return EXIT_USAGE
    token = "".join((stdin or sys.stdin).read().split())
    if not token:
        print("explain-token: paste a token on standard input", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(explain(token, settings, args.jwks, sys.stdout))
    except (OSError, ValueError) as exc:
        print(f"explain-token: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
