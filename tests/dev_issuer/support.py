"""Helpers for the development issuer's tests."""

import socket

AUDIENCE = "https://cats-dogs-other.local"
LOOPBACK_CLIENT = ("127.0.0.1", 50000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
