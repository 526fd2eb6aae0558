"""In-memory RSA signing keys with rotation. NOT FOR PRODUCTION.

Keys are generated at start-up and never written anywhere. Rotation publishes the new key
next to the previous ones, so tokens that are still outstanding keep verifying while new
tokens carry the new ``kid`` -- the situation a resource server meets when Auth0 rotates.
"""

import threading
from collections import deque
from typing import Any

from joserfc.jwk import Key, KeySet, RSAKey

ALGORITHM = "RS256"


def generate_signing_key(key_size: int) -> RSAKey:
    """A fresh RSA key whose ``kid`` is its RFC 7638 thumbprint (stable and unique)."""
    return RSAKey.generate_key(
        key_size, parameters={"use": "sig", "alg": ALGORITHM}, auto_kid=True, private=True
    )


class KeyRing:
    """The current signing key plus the most recent previous ones, newest first."""

    def __init__(self, *, key_size: int = 2048, published: int = 2) -> None:
        if published < 1:
            raise ValueError("at least one key must be published")
        self._key_size = key_size
        self._keys: deque[RSAKey] = deque([generate_signing_key(key_size)], maxlen=published)
        self._lock = threading.Lock()

    @property
    def current(self) -> RSAKey:
        """The key that signs new tokens."""
        return self._keys[0]

    @property
    def kids(self) -> list[str]:
        """Published key ids, newest first."""
        return [str(key.kid) for key in self._keys]

    def rotate(self) -> RSAKey:
        """Make a new current key; the oldest key falls off once ``published`` is reached."""
        key = generate_signing_key(self._key_size)  # slow part outside the lock
        with self._lock:
            self._keys.appendleft(key)
        return key

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set, as served at ``/.well-known/jwks.json``."""
        with self._lock:
            keys: list[Key] = list(self._keys)
        return dict(KeySet(keys).as_dict(private=False))
