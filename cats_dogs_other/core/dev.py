"""The development defaults ``make run`` publishes: one source for the issuer, the API and tools.

These are public values for a machine's own loopback stack (the development issuer's clients,
the API identifier it serves), never production secrets.
"""

from __future__ import annotations

DEV_AUDIENCE = "https://cats-dogs-other.local"
"""The API identifier (``aud``) the development issuer serves and ``make run`` configures."""
SCOPE = "get::prediction"
"""The scope ``POST /upload`` requires."""
DEV_CLIENT_ID = "dev-client"
DEV_CLIENT_SECRET = "dev-secret"  # noqa: S105 - a published development value
"""The client that may classify images."""
NO_SCOPE_CLIENT_ID = "no-scope-client"
NO_SCOPE_CLIENT_SECRET = "no-scope-secret"  # noqa: S105 - a published development value
"""The client that may not (to exercise 403)."""
DEV_TOKEN_PATH = "/dev/oauth/token"  # noqa: S105 - a path, not a secret
"""The API's development token endpoint (Swagger's Authorize dialog, behind ``make run``)."""
DEV_API_PORT = 8080
DEV_ISSUER_PORT = 9000
