"""Runs every session of the battery against one validator and keeps each case's outcome."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import httpx

from cats_dogs_other.loopback import ChildError
from compare.cases import SESSIONS, Case, Context, Outcome
from compare.issuer import TestIssuer
from compare.targets import Target

# A real rotation comes long after the last key fetch; 31 s clears this API's default 30 s
# refetch cooldown (JWKS_REFRESH_COOLDOWN_S), the longest of the validators compared.
DEFAULT_QUIET_S = 31.0


@dataclass
class TargetResult:
    name: str
    library: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def failed(self, cases: tuple[Case, ...]) -> list[str]:
        return [c.id for c in cases if not self.outcomes[c.id].passed]

    def unexpected_5xx(self, cases: tuple[Case, ...]) -> int:
        return sum(c.unexpected_5xx(self.outcomes[c.id]) for c in cases)


def run_battery(
    target: Target, issuer: TestIssuer, image: bytes, *, quiet_s: float = DEFAULT_QUIET_S
) -> TargetResult:
    result = TargetResult(target.name, target.library)
    # A fresh connection per request: a server that drops its connection after an error must
    # not make the next case fail.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(trust_env=False, limits=limits) as http:
        for session in SESSIONS:
            issuer.publish("key-1", "key-2")
            issuer.set_mode(session.start_mode, delay_s=session.delay_s)
            try:
                with target.running(issuer, ready=session.start_mode == "pass") as url:
                    context = Context(url, issuer, http, image, quiet_s)
                    for case in session.cases:
                        result.outcomes[case.id] = run_case(case, context)
            except ChildError as exc:
                for case in session.cases:
                    note = f"did not start: {str(exc).splitlines()[0]}"
                    result.outcomes.setdefault(case.id, Outcome(False, note=note))
            finally:
                issuer.set_mode("pass")
    return result


def run_case(case: Case, context: Context) -> Outcome:
    """A case that breaks (a bug of the battery, not of the validator) is reported loudly."""
    try:
        return case.run(context)
    except Exception as exc:
        print(f"compare: case {case.id} could not run: {exc!r}", file=sys.stderr, flush=True)
        return Outcome(False, note=f"battery error: {type(exc).__name__}")
