"""Reliability checks: the real server, attacked and overloaded on purpose, over loopback HTTP.

Run ``python -m reliability`` (all checks) or ``python -m reliability CHECK [--quick]``.
Every check starts its own processes (the development issuer, the API via ``boot.py``) on free
127.0.0.1 ports, prints its figures and one PASS/FAIL line, and the run writes
``reliability/results/RESULTS.md``. Nothing here is part of ``make test``: these take minutes.
"""
