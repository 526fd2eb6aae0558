#!/usr/bin/env bash
# Installs Debian's redis-server, haproxy and prometheus (for promtool) when missing: the
# multi-replica stack (`make run-replicas`), its fault tests and the rule check need them.
# Only the distribution's packages, through apt, as root (CI) or through sudo; the packages'
# own services are not started (the stack starts its own processes on loopback).
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v promtool >/dev/null || missing+=(prometheus)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-services: no apt-get here; install ${missing[*]}, or the tests that need them are skipped" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install-services: not root and no sudo; install ${missing[*]} yourself, or the tests that need them are skipped" >&2
        exit 0
    fi
    SUDO=(sudo)
fi
echo "install-services: installing Debian's ${missing[*]} (once)"
export DEBIAN_FRONTEND=noninteractive
# Without systemd the packages' services cannot start; policy-rc.d keeps dpkg from trying.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    added_policy=1
fi
cleanup() { if [ "$added_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
