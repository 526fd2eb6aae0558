"""Client for the cats/dogs/other API: client-credentials tokens, retries, batch uploads.

Use from Python (the ``cats-dogs-other`` command does the same)::

    http = httpx.Client(timeout=30)
    tokens = ClientCredentials(
        http,
        token_url="https://TENANT.eu.auth0.com/oauth/token",
        client_id="...",
        client_secret="...",
        audience="https://cats-dogs-other.example.com",
        cache=FileCache("~/.cache/cats-dogs-other/token.json"),
    )
    results = Classifier(http, "https://api.example.com", BearerAuth(tokens)).classify(paths)

With DPoP (RFC 9449), a key made in memory signs the token request and every upload::

    key = DPoPKey()
    tokens = ClientCredentials(http, ..., token_request_auth=DPoPTokenRequestAuth(key))
    results = Classifier(http, "https://api.example.com", DPoPAuth(tokens, key)).classify(paths)
"""

from kto.client.api import Classifier, Result, RetryPolicy
from kto.client.auth import BearerAuth
from kto.client.dpop import DPoPAuth, DPoPKey, DPoPTokenRequestAuth
from kto.client.errors import ClientError, ConfigurationError, TokenError
from kto.client.tokens import AccessToken, ClientCredentials, FileCache, MemoryCache, TokenSource

__all__ = [
    "AccessToken",
    "BearerAuth",
    "Classifier",
    "ClientCredentials",
    "ClientError",
    "ConfigurationError",
    "DPoPAuth",
    "DPoPKey",
    "DPoPTokenRequestAuth",
    "FileCache",
    "MemoryCache",
    "Result",
    "RetryPolicy",
    "TokenError",
    "TokenSource",
]
