#!/usr/bin/env bash
# Installs the benchmark's Debian tools when they are missing: wrk (the load generator) and
# stress-ng (the CPU hog of the contended case, `python -m bench --cases contended`). Only the
# distribution's packages, through apt, as root (CI) or through sudo; `taskset` (the one-core
# case) comes with util-linux, which every Debian has.
set -euo pipefail

exec bash "$(dirname "$0")/apt-install.sh" install-bench-tools wrk=wrk stress-ng=stress-ng
