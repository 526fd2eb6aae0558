#!/usr/bin/env bash
# Installs Debian's redis-server, haproxy and prometheus (for promtool) when missing: the
# multi-replica stack (`make run-replicas`), its fault tests and the rule check need them.
# Only the distribution's packages, through apt, as root (CI) or through sudo; the packages'
# own services are not started (the stack starts its own processes on loopback).
set -euo pipefail

exec bash "$(dirname "$0")/apt-install.sh" --no-services \
    --else "or the tests that need them are skipped" install-services \
    redis-server=redis-server haproxy=haproxy prometheus=promtool
