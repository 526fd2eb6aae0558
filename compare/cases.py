"""The battery: the same requests, in the same order, for every validator.

Each case states the answer RFC 6750 prescribes: 200 for a good token, 401 for a missing or
invalid one, 403 for a valid token without the scope, and 503 (retry later) when the keys cannot
be had, since a 401 there would tell a healthy client its token is bad. Cases run in sessions:
each cold-start session starts the validator afresh while the issuer misbehaves; the main
session runs on one warm process, stateless cases first, then key rotation and outages.

Tokens are the test suite's (``cats_dogs_other.testing.issuer.FakeIssuer``) with Auth0's
claims; the few that need a header joserfc refuses to write are signed here with the same keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from cats_dogs_other.testing.issuer import SCOPE
from cats_dogs_other.testing.jose import b64json, b64url, random_kid
from compare.issuer import TestIssuer, wait_quiet

REQUEST_TIMEOUT_S = 12.0
HANG_ANSWER_WITHIN_S = 10.0
RECOVERY_WITHIN_S = 45.0
FLOOD_TOKENS = 50
FLOOD_MAX_FETCHES = 2
ANY_4XX = frozenset(range(400, 500))


@dataclass
class Reply:
    status: int | None  # None: no answer (timeout, connection error)
    retry_after: str | None = None
    elapsed_s: float = 0.0


@dataclass
class Context:
    """What a case may use: the target's URL, the issuer, an HTTP client, the image to send."""

    url: str
    issuer: TestIssuer
    http: httpx.Client
    image: bytes
    quiet_s: float

    def upload(
        self, authorization: str | bytes | None, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> Reply:
        value = authorization.encode() if isinstance(authorization, str) else authorization
        headers = {} if value is None else {b"Authorization": value}
        started = time.monotonic()
        try:
            response = self.http.post(
                self.url + "/upload",
                headers=headers,
                files={"file": ("image.png", self.image, "image/png")},
                timeout=timeout_s,
            )
        except httpx.HTTPError:
            return Reply(None, elapsed_s=time.monotonic() - started)
        return Reply(
            response.status_code, response.headers.get("Retry-After"), time.monotonic() - started
        )

    def bearer(self, token: str, timeout_s: float = REQUEST_TIMEOUT_S) -> Reply:
        return self.upload(f"Bearer {token}", timeout_s)


@dataclass
class Outcome:
    passed: bool
    statuses: list[int | None] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    title: str
    expect: frozenset[int]
    run: Callable[[Context], Outcome]
    tolerate: frozenset[int] = frozenset()  # answers allowed on the way to the expected one

    def unexpected_5xx(self, outcome: Outcome) -> int:
        allowed = self.expect | self.tolerate
        return sum(1 for s in outcome.statuses if s is not None and s >= 500 and s not in allowed)


@dataclass(frozen=True)
class Session:
    """Cases that share one target process, started while the issuer is in ``start_mode``."""

    name: str
    start_mode: str
    cases: tuple[Case, ...]
    delay_s: float = 0.0


# -- token helpers ------------------------------------------------------------------------------


def claims(issuer: TestIssuer, **overrides: Any) -> dict[str, Any]:
    """The payload FakeIssuer would sign (Auth0's claims), for tokens signed by hand."""
    payload = issuer.token(**overrides).split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def rs256(
    header: dict[str, Any], payload: dict[str, Any], key: RSAKey, *, pss: bool = False
) -> str:
    """RS256 (or PS256) over any header, even one a JOSE library would refuse to write."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    private = key.private_key
    assert private is not None
    scheme = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if pss
        else padding.PKCS1v15()
    )
    signature = private.sign(signing_input.encode(), scheme, hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def _status_case(
    case_id: str,
    group: str,
    title: str,
    expect: int | frozenset[int],
    authorization: Callable[[TestIssuer], str | bytes | None],
) -> Case:
    expected = frozenset({expect}) if isinstance(expect, int) else expect

    def run(ctx: Context) -> Outcome:
        reply = ctx.upload(authorization(ctx.issuer))
        return Outcome(reply.status in expected, [reply.status])

    return Case(case_id, group, title, expected, run)


def token_case(
    case_id: str,
    group: str,
    title: str,
    make: Callable[[TestIssuer], str],
    expect: int | frozenset[int] = 401,
) -> Case:
    return _status_case(case_id, group, title, expect, lambda i: f"Bearer {make(i)}")


def header_case(
    case_id: str,
    group: str,
    title: str,
    header: str | bytes | None,
    expect: int | frozenset[int] = 401,
) -> Case:
    return _status_case(case_id, group, title, expect, lambda i: header)


def _now() -> int:
    return int(time.time())


def _key(issuer: TestIssuer, kid: str = "key-1") -> RSAKey:
    return issuer.fake.keys[kid]


def _alg_none(issuer: TestIssuer, alg: str) -> str:
    return f"{b64json({'alg': alg, 'kid': 'key-1', 'typ': 'JWT'})}.{b64json(claims(issuer))}."


def _hs256_with_public_key(issuer: TestIssuer) -> str:
    public_pem = _key(issuer).as_pem(private=False)
    signing_input = (
        f"{b64json({'alg': 'HS256', 'kid': 'key-1', 'typ': 'JWT'})}.{b64json(claims(issuer))}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def _es256(issuer: TestIssuer) -> str:
    key = ECKey.generate_key("P-256", parameters={"kid": "key-1"})
    return jwt.encode(
        {"alg": "ES256", "kid": "key-1", "typ": "JWT"}, claims(issuer), key, algorithms=["ES256"]
    )


def _ps256(issuer: TestIssuer) -> str:
    header = {"alg": "PS256", "kid": "key-1", "typ": "JWT"}
    return rs256(header, claims(issuer), _key(issuer), pss=True)


def _edited_payload(issuer: TestIssuer) -> str:
    header, _, signature = issuer.token(scope="read:other").split(".")
    return f"{header}.{b64json(claims(issuer, azp='admin'))}.{signature}"


def _embedded_key(issuer: TestIssuer) -> str:
    attacker = _key(issuer, "attacker")
    header = {
        "jwk": attacker.as_dict(private=False),
        "jku": issuer.url + "attacker/jwks.json",
        "x5u": issuer.url + "attacker/cert.pem",
    }
    return issuer.token("attacker", header=header)


def _no_typ(issuer: TestIssuer) -> str:
    return rs256({"alg": "RS256", "kid": "key-1"}, claims(issuer), _key(issuer))


def _big_token(issuer: TestIssuer) -> str:
    return issuer.token(permissions=[f"read:resource-{n}" for n in range(100)] + [SCOPE])


# -- scenarios ----------------------------------------------------------------------------------


def _expect_status(
    expect: int, *, within_s: float = REQUEST_TIMEOUT_S
) -> Callable[[Context], Outcome]:
    def run(ctx: Context) -> Outcome:
        reply = ctx.bearer(ctx.issuer.token(), timeout_s=within_s)
        note = f"answered in {reply.elapsed_s:.1f} s" if reply.status is not None else "no answer"
        return Outcome(reply.status == expect, [reply.status], note)

    return run


def _recovers(ctx: Context) -> Outcome:
    """The issuer is back: the validator recovers without a restart (honouring Retry-After)."""
    ctx.issuer.set_mode("pass")
    deadline = time.monotonic() + RECOVERY_WITHIN_S
    statuses: list[int | None] = []
    while time.monotonic() < deadline:
        reply = ctx.bearer(ctx.issuer.token())
        statuses.append(reply.status)
        if reply.status == 200:
            return Outcome(True, statuses, f"after {len(statuses)} request(s)")
        asked = reply.retry_after or ""
        wait = float(asked) if asked.isdigit() else 1.0
        time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
    return Outcome(False, statuses, f"no 200 within {RECOVERY_WITHIN_S:.0f} s")


def _rotation_new_key(ctx: Context) -> Outcome:
    """The issuer rotates in a new signing key after the validator cached the key set."""
    wait_quiet(ctx.issuer, ctx.quiet_s)
    ctx.issuer.publish("key-1", "key-2", "key-3")
    reply = ctx.bearer(ctx.issuer.token("key-3"))
    return Outcome(reply.status == 200, [reply.status])


def _flood(ctx: Context) -> Outcome:
    since = time.monotonic()
    tokens = [ctx.issuer.token(random_kid(), signing_key="attacker") for _ in range(FLOOD_TOKENS)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = [r.status for r in pool.map(ctx.bearer, tokens)]
    fetches = ctx.issuer.fetches(since)
    refused = all(s == 401 for s in statuses)
    return Outcome(refused and fetches <= FLOOD_MAX_FETCHES, statuses, f"{fetches} key fetch(es)")


def _outage(
    then: Callable[[TestIssuer], str], expect: frozenset[int]
) -> Callable[[Context], Outcome]:
    def run(ctx: Context) -> Outcome:
        ctx.issuer.set_mode("refuse")
        reply = ctx.bearer(then(ctx.issuer))
        return Outcome(reply.status in expect, [reply.status])

    return run


def _restore(run: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
    def wrapped(ctx: Context) -> Outcome:
        try:
            return run(ctx)
        finally:
            ctx.issuer.set_mode("pass")

    return wrapped


OK = frozenset({200})
UNAVAILABLE = frozenset({503})

GOOD = (
    token_case("valid", "good", "valid Auth0-shaped RS256 token", lambda i: i.token(), 200),
    token_case(
        "aud-list",
        "good",
        "aud is a list holding ours (Auth0 adds /userinfo)",
        lambda i: i.token(aud=[i.audience, i.url + "userinfo"]),
        200,
    ),
    token_case(
        "scope-among-others",
        "good",
        "scope among other scopes",
        lambda i: i.token(scope=f"openid {SCOPE} profile"),
        200,
    ),
    token_case(
        "rbac-permissions",
        "good",
        "Auth0 RBAC: the scope in `permissions`, `scope` has OIDC scopes",
        lambda i: i.token(scope="openid profile", permissions=[SCOPE]),
        200,
    ),
    token_case(
        "typ-at+jwt",
        "good",
        "typ at+jwt (RFC 9068)",
        lambda i: i.token(header={"typ": "at+jwt"}),
        200,
    ),
    token_case("no-typ", "good", "no typ header", _no_typ, 200),
    token_case(
        "clock-skew",
        "good",
        "issuer clock 30 s ahead (iat, nbf)",
        lambda i: i.token(iat=_now() + 30, nbf=_now() + 30),
        200,
    ),
    token_case(
        "second-key", "good", "signed by the other published key", lambda i: i.token("key-2"), 200
    ),
    token_case("large-token", "good", "100 permissions (a ~3 KB token)", _big_token, 200),
    _status_case(
        "lowercase-scheme",
        "good",
        "scheme written `bearer` (case-insensitive, RFC 9110)",
        200,
        lambda i: f"bearer {i.token()}",
    ),
)

MALFORMED = (
    header_case("no-header", "malformed", "no Authorization header", None),
    header_case("basic-scheme", "malformed", "Basic credentials instead of a token", "Basic dTpw"),
    header_case(
        "empty-bearer",
        "malformed",
        "`Bearer` with no token (400 invalid_request also right)",
        "Bearer",
        frozenset({400, 401}),
    ),
    header_case("one-word", "malformed", "token `abc`", "Bearer abc"),
    header_case("not-base64-json", "malformed", "token `a.b.c`", "Bearer a.b.c"),
    header_case(
        "empty-json", "malformed", "token `e30.e30.e30` (three `{}`)", "Bearer e30.e30.e30"
    ),
    header_case("non-ascii", "malformed", "non-ASCII bytes in the token", "Bearer é.é.é".encode()),
    token_case(
        "header-array",
        "malformed",
        "header is a JSON array",
        lambda i: f"{b64url(b'[1,2]')}.{b64json(claims(i))}.{b64url(b'sig')}",
    ),
    token_case(
        "jwe-shaped",
        "malformed",
        "five segments (an encrypted JWE)",
        lambda i: f"{b64json({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.a.b.c.d",
    ),
    header_case(
        "64-kib-token",
        "malformed",
        "a 64 KiB token: refused with a 4xx",
        "Bearer " + "a" * 65536,
        ANY_4XX,
    ),
)

SIGNATURES = (
    token_case("alg-none", "algorithm", "alg none, no signature", lambda i: _alg_none(i, "none")),
    token_case("alg-NONE", "algorithm", "alg NONE (case variant)", lambda i: _alg_none(i, "NONE")),
    token_case(
        "hs256-public-key",
        "algorithm",
        "HS256 keyed with the public key (algorithm confusion)",
        _hs256_with_public_key,
    ),
    token_case("es256", "algorithm", "ES256 with a key of its own, our kid", _es256),
    token_case("ps256", "algorithm", "PS256 with the issuer's key (alg not allowed)", _ps256),
    token_case(
        "signature-stripped",
        "signature",
        "signature removed",
        lambda i: i.token().rsplit(".", 1)[0] + ".",
    ),
    token_case("payload-edited", "signature", "payload changed after signing", _edited_payload),
    token_case(
        "missing-kid",
        "keys",
        "no kid",
        lambda i: rs256({"alg": "RS256", "typ": "JWT"}, claims(i), _key(i)),
    ),
    token_case(
        "unknown-kid", "keys", "a kid the issuer does not publish", lambda i: i.token("attacker")
    ),
    token_case(
        "right-kid-wrong-key",
        "keys",
        "our kid, signed by another key",
        lambda i: i.token("key-1", signing_key="attacker"),
    ),
    token_case(
        "kid-not-string",
        "keys",
        "kid is a number",
        lambda i: rs256({"alg": "RS256", "typ": "JWT", "kid": 123}, claims(i), _key(i, "attacker")),
    ),
    token_case("embedded-key", "keys", "attacker's key in jwk / jku / x5u headers", _embedded_key),
    token_case(
        "crit-unknown",
        "keys",
        "crit names an extension nobody understands (RFC 7515 4.1.11)",
        lambda i: rs256(
            {
                "alg": "RS256",
                "typ": "JWT",
                "kid": "key-1",
                "crit": ["urn:example:must-understand"],
                "urn:example:must-understand": True,
            },
            claims(i),
            _key(i),
        ),
    ),
)

CLAIMS = (
    token_case(
        "expired",
        "time",
        "expired an hour ago",
        lambda i: i.token(iat=_now() - 7200, exp=_now() - 3600),
    ),
    token_case(
        "expired-5-min",
        "time",
        "expired 5 minutes ago",
        lambda i: i.token(iat=_now() - 900, exp=_now() - 300),
    ),
    token_case(
        "nbf-future",
        "time",
        "not valid for another 10 minutes (nbf)",
        lambda i: i.token(nbf=_now() + 600),
    ),
    token_case(
        "iat-future",
        "time",
        "issued a day in the future (iat)",
        lambda i: i.token(iat=_now() + 86400),
    ),
    token_case("no-exp", "time", "no exp", lambda i: i.token(exp=None)),
    token_case("exp-not-a-number", "time", "exp is a string", lambda i: i.token(exp="never")),
    token_case(
        "wrong-issuer", "claims", "another issuer", lambda i: i.token(iss="https://evil.test/")
    ),
    token_case(
        "issuer-no-slash",
        "claims",
        "issuer without its trailing slash",
        lambda i: i.token(iss=i.url.rstrip("/")),
    ),
    token_case("no-issuer", "claims", "no iss", lambda i: i.token(iss=None)),
    token_case(
        "wrong-audience",
        "claims",
        "another API's audience",
        lambda i: i.token(aud="https://other-api.test"),
    ),
    token_case(
        "audience-list-without-ours",
        "claims",
        "aud list without ours",
        lambda i: i.token(aud=["https://a.test", "https://b.test"]),
    ),
    token_case("no-audience", "claims", "no aud", lambda i: i.token(aud=None)),
)

SCOPES = (
    token_case("no-scope", "scope", "no scope, no permissions", lambda i: i.token(scope=None), 403),
    token_case(
        "scope-plural", "scope", "scope get::predictions", lambda i: i.token(scope=SCOPE + "s"), 403
    ),
    token_case(
        "scope-suffix",
        "scope",
        "scope get::prediction:all",
        lambda i: i.token(scope=SCOPE + ":all"),
        403,
    ),
    token_case(
        "scope-prefix",
        "scope",
        "scope admin:get::prediction",
        lambda i: i.token(scope="admin:" + SCOPE),
        403,
    ),
    token_case(
        "permissions-string",
        "scope",
        "permissions is a string, not a list",
        lambda i: i.token(scope=None, permissions=SCOPE + "s"),
        403,
    ),
)

WARM_SCENARIOS = (
    Case(
        "rotation-new-key",
        "rotation",
        "the issuer rotates in a new key after the keys were cached",
        OK,
        _rotation_new_key,
    ),
    token_case(
        "rotation-old-key",
        "rotation",
        "the previous key, still published, keeps working",
        lambda i: i.token("key-1"),
        200,
    ),
    Case(
        "unknown-kid-flood",
        "rotation",
        f"{FLOOD_TOKENS} tokens with random kids: all 401, at most {FLOOD_MAX_FETCHES} key fetches",
        frozenset({401}),
        _flood,
    ),
    Case(
        "outage-cached-keys",
        "outage",
        "issuer down after warm-up: valid tokens still pass",
        OK,
        _outage(lambda i: i.token(), OK),
    ),
    Case(
        "outage-unknown-kid",
        "outage",
        "issuer down, a token with an unknown kid: 401 or 503",
        frozenset({401, 503}),
        _outage(lambda i: i.token(random_kid(), signing_key="attacker"), frozenset({401, 503})),
    ),
    Case(
        "outage-after-unknown-kid",
        "outage",
        "still down: valid tokens still pass after that",
        OK,
        _restore(_outage(lambda i: i.token(), OK)),
    ),
)

SESSIONS = (
    Session(
        "cold-refused",
        "refuse",
        (
            Case(
                "cold-issuer-down",
                "outage",
                "first request while the issuer refuses connections: 503",
                UNAVAILABLE,
                _expect_status(503),
            ),
            Case(
                "cold-recovery",
                "outage",
                "the issuer comes back: 200 without a restart",
                OK,
                _recovers,
                tolerate=UNAVAILABLE,
            ),
        ),
    ),
    Session(
        "cold-garbage",
        "garbage",
        (
            Case(
                "cold-issuer-garbage",
                "outage",
                "first request while discovery and keys are not JSON: 503",
                UNAVAILABLE,
                _expect_status(503),
            ),
        ),
    ),
    Session(
        "cold-hang",
        "slow",
        (
            Case(
                "cold-issuer-hangs",
                "outage",
                f"first request while the issuer hangs: 503 within {HANG_ANSWER_WITHIN_S:.0f} s",
                UNAVAILABLE,
                _expect_status(503, within_s=HANG_ANSWER_WITHIN_S),
            ),
        ),
        delay_s=60.0,
    ),
    Session("warm", "pass", GOOD + MALFORMED + SIGNATURES + CLAIMS + SCOPES + WARM_SCENARIOS),
)

CASES: tuple[Case, ...] = tuple(case for session in SESSIONS for case in session.cases)
