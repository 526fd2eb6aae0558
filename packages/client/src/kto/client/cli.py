"""``cats-dogs-other classify FILE...``: the command a script or a CI job runs.

Every option has an environment variable, so secrets stay out of the command line (and out of
``ps`` and CI logs). The exit status says what happened, so a job can fail on a bad image.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

import httpx
from kto.client.api import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_RETRY_WAIT_S,
    Classifier,
    Result,
    RetryPolicy,
)
from kto.client.auth import BearerAuth
from kto.client.dpop import DPoPAuth, DPoPKey, DPoPTokenRequestAuth
from kto.client.errors import ClientError, ConfigurationError, TokenError
from kto.client.github_actions import GITHUB_ACTIONS, GitHubActionsTokens, resolve_auth
from kto.client.output import render_json, render_table
from kto.client.text import escape_controls, from_server
from kto.client.tokens import ClientCredentials, FileCache, MemoryCache, TokenCache
from kto.client.urls import redact, redact_text, require_secure

EXIT_OK = 0
EXIT_FAILED_IMAGE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
DEFAULT_TIMEOUT_S = 30.0
URL_FLAGS = ("--api-url", "--token-url", "--issuer")  # https unless loopback, or opted out
_N = TypeVar("_N", int, float)


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    help: str
    default: str | None = None


OPTIONS = (
    Option("--api-url", "CDO_API_URL", "base URL of the API, e.g. https://api.example.com"),
    Option(
        "--token-url",
        "CDO_TOKEN_URL",
        "OAuth2 token endpoint, e.g. https://TENANT.eu.auth0.com/oauth/token "
        "(default: the token_endpoint of --issuer's discovery document)",
    ),
    Option("--issuer", "CDO_ISSUER", "OAuth2 issuer, used to discover the token endpoint"),
    Option("--client-id", "CDO_CLIENT_ID", "client id of the machine-to-machine application"),
    Option(
        "--client-secret",
        "CDO_CLIENT_SECRET",
        "its secret; prefer the environment variable, a flag shows in `ps` and shell history",
    ),
    Option("--audience", "CDO_AUDIENCE", "API identifier the token is for (OAUTH2_AUDIENCE)"),
    Option("--scope", "CDO_SCOPE", "scopes to request (default: all the client was granted)"),
    Option(
        "--token-cache",
        "CDO_TOKEN_CACHE",
        "file to keep the token in between runs (created with mode 0600); default: memory only",
    ),
    Option(
        "--auth",
        "CDO_AUTH",
        "client-credentials, github-actions (the job's OIDC token, no secret), or auto: "
        "github-actions when ACTIONS_ID_TOKEN_REQUEST_URL is set and no client secret is given",
        "auto",
    ),
    Option("--format", "CDO_FORMAT", "output: json or table", "table"),
    Option(
        "--batch-size", "CDO_BATCH_SIZE", "files per /upload/batch call", str(DEFAULT_BATCH_SIZE)
    ),
    Option("--attempts", "CDO_ATTEMPTS", "tries per request on 503/429", str(DEFAULT_ATTEMPTS)),
    Option(
        "--max-retry-wait",
        "CDO_MAX_RETRY_WAIT_S",
        "longest wait honoured from Retry-After, seconds",
        str(DEFAULT_MAX_RETRY_WAIT_S),
    ),
    Option("--timeout", "CDO_TIMEOUT_S", "HTTP timeout, seconds", str(DEFAULT_TIMEOUT_S)),
)

EPILOG = """\
exit status:
  0  every image was classified
  1  at least one image failed (unreadable, refused, not an image, API error)
  2  usage or configuration error
  3  no access token could be obtained (credentials, audience, issuer unreachable)

example:
  export CDO_API_URL=http://127.0.0.1:8080 CDO_ISSUER=http://127.0.0.1:9000/ \\
         CDO_CLIENT_ID=dev-client CDO_CLIENT_SECRET=dev-secret \\
         CDO_AUDIENCE=https://cats-dogs-other.local
  cats-dogs-other classify --format json bruno/fixtures/*.png
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cats-dogs-other",
        description="Client for the cats/dogs/other classification API.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    classify = commands.add_parser(
        "classify",
        help="classify image files",
        description="Get a client-credentials token (reused until shortly before it expires), "
        "upload each FILE and print one result per file. Every option can also be set by the "
        "environment variable shown in brackets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    classify.add_argument("files", nargs="+", metavar="FILE", type=Path, help="JPEG or PNG files")
    for option in OPTIONS:
        default = os.environ.get(option.env, option.default)
        shown = f" (default: {option.default})" if option.default else ""
        classify.add_argument(
            option.flag, default=default, help=f"{option.help}{shown} [{option.env}]"
        )
    classify.add_argument(
        "--batch",
        action=argparse.BooleanOptionalAction,
        default=_flag(os.environ.get("CDO_BATCH")),
        help="send files through /upload/batch, --batch-size at a time [CDO_BATCH=1]",
    )
    classify.add_argument(
        "--dpop",
        action=argparse.BooleanOptionalAction,
        default=_flag(os.environ.get("CDO_DPOP")),
        help="bind the token to a key made for this run (DPoP, RFC 9449): a copied token is "
        "useless without it; the key is never stored, so not with --token-cache [CDO_DPOP=1]",
    )
    classify.add_argument(
        "--allow-insecure-http",
        action=argparse.BooleanOptionalAction,
        default=_flag(os.environ.get("CDO_ALLOW_INSECURE_HTTP")),
        help="allow plain http to hosts other than localhost, 127.0.0.0/8 and ::1 for the API, "
        "token, issuer and discovered token URLs: the secret and the token then cross the "
        "network readable by anyone on the path [CDO_ALLOW_INSECURE_HTTP=1]",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command; ``transport`` and ``sleep`` replace the network and the clock in tests."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        results = _classify(args, transport, sleep)
    except TokenError as exc:
        print(f"cats-dogs-other: {escape_controls(str(exc))}", file=err)
        return EXIT_AUTH
    except ConfigurationError as exc:
        print(f"cats-dogs-other: {escape_controls(str(exc))}", file=err)
        return EXIT_USAGE
    except ClientError as exc:
        print(f"cats-dogs-other: {escape_controls(str(exc))}", file=err)
        return EXIT_FAILED_IMAGE
    out.write(render_json(results) if args.format == "json" else render_table(results))
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILED_IMAGE


def _check_arguments(args: argparse.Namespace) -> bool:
    """Every setting present, consistent and secure, or ConfigurationError; True when the
    token is GitHub Actions' own (--auth github-actions)."""
    if args.format not in {"json", "table"}:
        raise ConfigurationError(f"--format must be json or table, not {args.format!r}.")
    github = resolve_auth(args.auth, args.client_secret, os.environ) == GITHUB_ACTIONS
    needed = ("--api-url", "--audience") + (() if github else ("--client-id", "--client-secret"))
    missing = [
        f"{o.flag} ({o.env})"
        for o in OPTIONS
        if o.flag in needed and not getattr(args, _dest(o.flag))
    ]
    if github and (args.token_cache or args.dpop):
        raise ConfigurationError(
            "--auth github-actions cannot be used with --token-cache or --dpop: the job's token "
            "lives 5 minutes, stays in memory and is a Bearer token."
        )
    if not github and not (args.token_url or args.issuer):
        missing.append("--token-url (CDO_TOKEN_URL) or --issuer (CDO_ISSUER)")
    if missing:
        raise ConfigurationError("Missing settings: " + ", ".join(missing) + ".")
    for o in OPTIONS:
        if o.flag in URL_FLAGS and (url := getattr(args, _dest(o.flag))):
            require_secure(url, f"{o.flag} ({o.env})", allow_insecure_http=args.allow_insecure_http)
    if args.dpop and args.token_cache:
        raise ConfigurationError(
            "--dpop (CDO_DPOP) cannot be used with --token-cache (CDO_TOKEN_CACHE): the DPoP key "
            "stays in memory, and a cached token is useless without it. Drop one of them."
        )
    return github


def _classify(
    args: argparse.Namespace,
    transport: httpx.BaseTransport | None,
    sleep: Callable[[float], None] | None,
) -> list[Result]:
    github = _check_arguments(args)
    insecure_ok = args.allow_insecure_http
    batch_size = _number(args.batch_size, "--batch-size", int)
    attempts = _number(args.attempts, "--attempts", int)
    max_wait = _number(args.max_retry_wait, "--max-retry-wait", float)
    timeout = _number(args.timeout, "--timeout", float)
    with httpx.Client(transport=transport, timeout=timeout) as http:
        if github:
            job = GitHubActionsTokens.from_environment(http, args.audience, os.environ)
            return _run(
                args, http, BearerAuth(job), sleep, batch_size, attempts, max_wait, insecure_ok
            )
        token_url = args.token_url or discover_token_url(
            http, args.issuer, allow_insecure_http=insecure_ok
        )
        cache: TokenCache = FileCache(args.token_cache) if args.token_cache else MemoryCache()
        key = DPoPKey() if args.dpop else None
        tokens = ClientCredentials(
            http,
            token_url=token_url,
            client_id=args.client_id,
            client_secret=args.client_secret,
            audience=args.audience,
            scope=args.scope or None,
            cache=cache,
            token_request_auth=DPoPTokenRequestAuth(key) if key else None,
            allow_insecure_http=insecure_ok,
        )
        auth = DPoPAuth(tokens, key) if key else BearerAuth(tokens)
        return _run(args, http, auth, sleep, batch_size, attempts, max_wait, insecure_ok)


def _run(
    args: argparse.Namespace,
    http: httpx.Client,
    auth: BearerAuth,
    sleep: Callable[[float], None] | None,
    batch_size: int,
    attempts: int,
    max_wait: float,
    insecure_ok: bool,
) -> list[Result]:
    retry = RetryPolicy(attempts=max(1, attempts), max_wait_s=max_wait)
    if sleep is not None:
        retry = RetryPolicy(attempts=retry.attempts, max_wait_s=max_wait, sleep=sleep)
    classifier = Classifier(http, args.api_url, auth, retry=retry, allow_insecure_http=insecure_ok)
    return classifier.classify(args.files, batch=args.batch, batch_size=batch_size)


def discover_token_url(
    http: httpx.Client, issuer: str, *, allow_insecure_http: bool = False
) -> str:
    """The issuer's ``token_endpoint`` from its OpenID configuration, https unless loopback."""
    require_secure(issuer, "The issuer", allow_insecure_http=allow_insecure_http)
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = http.get(url)
        endpoint = response.json().get("token_endpoint") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        detail = from_server(redact_text(str(exc)))
        message = f"The issuer's discovery document {redact(url)} could not be read: {detail}."
        raise TokenError(message) from None
    if not isinstance(endpoint, str):
        raise TokenError(f"{redact(url)} names no token_endpoint; set --token-url (CDO_TOKEN_URL).")
    setting = f"The token_endpoint of {redact(url)}"
    require_secure(endpoint, setting, allow_insecure_http=allow_insecure_http)
    return endpoint


def _flag(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes"}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _number(value: str, flag: str, kind: Callable[[str], _N]) -> _N:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{flag} must be a number, not {value!r}.") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
