"""Helpers for the development issuer's tests."""

from cats_dogs_other.loopback import LOOPBACK

AUDIENCE = "https://cats-dogs-other.local"
LOOPBACK_CLIENT = (LOOPBACK, 50000)


def token_form(
    client_id: str = "dev-client",
    secret: str = "dev-secret",  # noqa: S107 - the documented development secret
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
