"""``python -m cats_dogs_other.dev_issuer``: serve the development issuer. NOT FOR PRODUCTION."""

import argparse
import logging
from collections.abc import Sequence

import uvicorn

from cats_dogs_other.core.cli_help import EnvironmentHelpFormatter
from cats_dogs_other.core.dev import (
    DEV_AUDIENCE,
    DEV_CLIENT_ID,
    DEV_CLIENT_SECRET,
    DEV_ISSUER_PORT,
    NO_SCOPE_CLIENT_ID,
    NO_SCOPE_CLIENT_SECRET,
    SCOPE,
)
from cats_dogs_other.dev_issuer.app import create_app
from cats_dogs_other.dev_issuer.settings import IssuerSettings

ENVIRONMENT = f"""\
environment variables:
  DEV_ISSUER_HOST              bind address (default 127.0.0.1)
  DEV_ISSUER_PORT              port (default {DEV_ISSUER_PORT})
  DEV_ISSUER_URL               issuer URL, the tokens' iss (default http://HOST:PORT/)
  DEV_ISSUER_AUDIENCE          the one API identifier served (default {DEV_AUDIENCE})
  DEV_ISSUER_CLIENTS           JSON: {{"CLIENT_ID": {{"secret": "...", "scopes": ["..."]}}, ...}}
                               (default: {DEV_CLIENT_ID}/{DEV_CLIENT_SECRET} with {SCOPE} and
                               {NO_SCOPE_CLIENT_ID}/{NO_SCOPE_CLIENT_SECRET} without it)
  DEV_ISSUER_TOKEN_LIFETIME_S  token lifetime in seconds (default 86400)
  DEV_ISSUER_KEYS_PUBLISHED    signing keys published in the JWKS (default 2)
  DEV_ISSUER_KEY_SIZE          RSA key size in bits (default 2048)
  DEV_ISSUER_DPOP_REPLAY_CACHE_SIZE
                               DPoP proof ids remembered at the token endpoint (default 10000)
  DEV_ISSUER_LOG_LEVEL         DEBUG, INFO, WARNING... (default INFO)
  DEV_ISSUER_GITHUB_JOB        JSON: claims of the job the GitHub Actions stand-in
                               (/github-actions) describes, over its default repository
                               octo-org/octo-repo (ids 123456789 / 987654)
  DEV_ISSUER_GITHUB_REQUEST_TOKEN
                               the job's ACTIONS_ID_TOKEN_REQUEST_TOKEN
                               (default dev-actions-request-token)
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cats_dogs_other.dev_issuer",
        description="Auth0-compatible development issuer (NOT FOR PRODUCTION). "
        "Defaults come from DEV_ISSUER_* environment variables; options override them.",
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
    )
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"port (default {DEV_ISSUER_PORT})")
    parser.add_argument("--issuer", dest="url", help="issuer URL (default http://HOST:PORT/)")
    parser.add_argument("--audience", help=f"API identifier (default {DEV_AUDIENCE})")
    parser.add_argument("--token-lifetime", dest="token_lifetime_s", type=int, help="seconds")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING...")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    overrides = {name: value for name, value in vars(parse_args(argv)).items() if value is not None}
    settings = IssuerSettings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        log_config=None,  # uvicorn's records go through the format configured above
    )


if __name__ == "__main__":
    main()
