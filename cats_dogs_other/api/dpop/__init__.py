"""DPoP (RFC 9449) in the API: a bound token's proof checked against the request and the token.

The proof's own rules, shared with the development issuer, are in :mod:`cats_dogs_other.core.dpop`
(and its server nonces in :mod:`cats_dogs_other.core.dpop_nonce`); ``binding`` ties a proof to
the request's token, replay record and nonce policy.
"""
