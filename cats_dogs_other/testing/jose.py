"""Hand-made JOSE pieces: base64url segments and tokens a JOSE library would refuse to produce."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from joserfc.jwk import RSAKey


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2), as a JWS segment carries it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    """A JSON object as a compact JWS segment."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def raw_token(key: RSAKey, header: bytes, payload: bytes) -> str:
    """An RS256 compact JWS over exactly these header and payload bytes (no JSON re-encoding),
    for headers and claims a JOSE library would refuse to produce."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = key.raw_value
    assert isinstance(private, rsa.RSAPrivateKey), "a private key signs"
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def random_kid() -> str:
    """A key id no issuer published."""
    return uuid.uuid4().hex
