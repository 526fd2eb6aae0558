"""Helpers for the development issuer's tests."""

from cats_dogs_other.core.dev import DEV_AUDIENCE, DEV_CLIENT_ID, DEV_CLIENT_SECRET
from cats_dogs_other.loopback import LOOPBACK

AUDIENCE = DEV_AUDIENCE
LOOPBACK_CLIENT = (LOOPBACK, 50000)


def token_form(
    client_id: str = DEV_CLIENT_ID,
    secret: str = DEV_CLIENT_SECRET,
    **extra: str,
) -> dict[str, str]:
    """A client-credentials request body, as Auth0's documentation writes it."""
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "audience": AUDIENCE,
        **extra,
    }
