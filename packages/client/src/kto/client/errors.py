"""What can go wrong for a caller, each with a sentence that says what to do."""

from __future__ import annotations


class ClientError(Exception):
    """Base of the client's own errors; the message is meant for a person."""


class ConfigurationError(ClientError):
    """A required setting is missing or malformed."""


class TokenError(ClientError):
    """No access token could be obtained (bad credentials, unreachable issuer)."""
