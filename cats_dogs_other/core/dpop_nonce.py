"""Stateless server nonces for DPoP proofs (RFC 9449 section 8).

A nonce is ``<window>.<mac>``: the index of the current time window and an HMAC-SHA256 of it
under a shared secret. Any worker or replica holding the same secret recognises it without
storing anything, so nonces work behind a load balancer. The nonce of the current window and of
the one before are accepted, so a client that fetched a nonce just before the window turned over
is not refused; a proof therefore cannot be prepared more than two windows in advance.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

_CONTEXT = b"cats-dogs-other dpop-nonce v1:"
_MAC_BYTES = 16
MAX_NONCE_CHARS = 64


class NonceSource:
    """Issues the current nonce and recognises the current and the previous one."""

    def __init__(
        self, secret: bytes, *, lifetime_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the nonce secret must be at least 32 bytes")
        if lifetime_s < 1:
            raise ValueError("lifetime_s must be positive")
        self._secret = secret
        self._lifetime_s = lifetime_s
        self._clock = clock

    def current(self) -> str:
        """The nonce a client should put in its next proof."""
        return self._nonce(self._window())

    def is_valid(self, nonce: object) -> bool:
        if not isinstance(nonce, str) or len(nonce) > MAX_NONCE_CHARS:
            return False
        window_text, _, _ = nonce.partition(".")
        if not (window_text.isascii() and window_text.isdigit()):
            return False
        window = int(window_text)
        now = self._window()
        if window not in (now, now - 1):
            return False
        return nonce.isascii() and hmac.compare_digest(nonce.encode(), self._nonce(window).encode())

    def _window(self) -> int:
        return int(self._clock() // self._lifetime_s)

    def _nonce(self, window: int) -> str:
        mac = hmac.new(self._secret, _CONTEXT + str(window).encode(), hashlib.sha256).digest()
        return f"{window}.{base64.urlsafe_b64encode(mac[:_MAC_BYTES]).rstrip(b'=').decode()}"
