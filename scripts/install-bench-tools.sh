#!/usr/bin/env bash
# Installs the benchmark's Debian tools when they are missing: wrk (the load generator) and
# stress-ng (the CPU hog of the contended case, `python -m bench --cases contended`). Only the
# distribution's packages, through apt, as root (CI) or through sudo; `taskset` (the one-core
# case) comes with util-linux, which every Debian has.
set -euo pipefail

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v stress-ng >/dev/null || missing+=(stress-ng)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-bench-tools: no apt-get here; install ${missing[*]} yourself" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install-bench-tools: not root and no sudo; install ${missing[*]} yourself" >&2
        exit 0
    fi
    SUDO=(sudo)
fi
echo "install-bench-tools: installing Debian's ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
