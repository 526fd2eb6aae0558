#!/usr/bin/env bash
# Installs the Debian packages whose commands are missing: only the distribution's packages,
# through apt, as root (CI) or through sudo. The install-*.sh scripts (make browser, services,
# bench-tools) call it.
#
#   apt-install.sh [--no-services] [--else TEXT] NAME PACKAGE=COMMAND[|COMMAND]...
#
# PACKAGE is installed when none of its COMMANDs is on PATH; nothing runs when none is missing.
# Where there is no apt-get, or neither root nor sudo, it names what to install (followed by
# ", TEXT": what is skipped without them) and exits 0. --no-services keeps dpkg from starting
# the packages' own services (policy-rc.d), which cannot start without systemd.
set -euo pipefail

no_services=0
otherwise=""
while [ "$#" -gt 0 ]; do
    case "$1" in
    --no-services) no_services=1 && shift ;;
    --else) otherwise=", $2" && shift 2 ;;
    *) break ;;
    esac
done
name=$1
shift

missing=()
for pair in "$@"; do
    IFS='|' read -ra commands <<<"${pair#*=}"
    found=0
    for command in "${commands[@]}"; do
        if command -v "$command" >/dev/null; then
            found=1
        fi
    done
    if [ "$found" -eq 0 ]; then
        missing+=("${pair%%=*}")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "$name: no apt-get here; install ${missing[*]} yourself$otherwise" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "$name: not root and no sudo; install ${missing[*]} yourself$otherwise" >&2
        exit 0
    fi
    SUDO=(sudo)
fi
echo "$name: installing Debian's ${missing[*]} (once)"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ "$no_services" -eq 1 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    added_policy=1
fi
cleanup() { if [ "$added_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
