#!/usr/bin/env bash
# Installs Debian's chromium and its WebDriver for the browser test (tests/e2e/test_docs_browser.py)
# when they are missing. Never downloads a browser build of its own: only the distribution's
# packages, through apt, as root (CI) or through sudo.
set -euo pipefail

# GitHub's Ubuntu runners already have Chrome and its driver; Debian needs the packages.
if command -v chromedriver >/dev/null &&
    { command -v chromium >/dev/null || command -v google-chrome >/dev/null; }; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-browser: no apt-get here; install chromium and chromedriver, or the browser test is skipped" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install-browser: not root and no sudo; install chromium and chromium-driver yourself" >&2
        exit 0
    fi
    SUDO=(sudo)
fi
echo "install-browser: installing Debian's chromium and chromium-driver (once, about 0.5 GB with its libraries)"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
