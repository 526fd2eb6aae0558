"""Side-by-side benchmark: the wheel's batch path (ceiling), a naive server, and this API.

Run ``python -m bench`` (or ``make bench``); ``python -m bench --help`` lists the options.
Everything runs on 127.0.0.1; results go to ``bench/results/`` (RESULTS.md, bench.png).
"""
