"""Development OAuth2 issuer that behaves like Auth0 on loopback. NOT FOR PRODUCTION.

It exists so a newcomer, a Codespaces session and CI can run the whole system through the
same client-credentials flow as production without an Auth0 tenant. Secrets are known,
keys live in memory only, and there is no persistence, rate limiting or audit trail.
"""

from cats_dogs_other.dev_issuer.app import create_app
from cats_dogs_other.dev_issuer.settings import ClientConfig, IssuerSettings

__all__ = ["ClientConfig", "IssuerSettings", "create_app"]
