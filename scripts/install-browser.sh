#!/usr/bin/env bash
# Installs Debian's chromium and its WebDriver for the browser test (tests/e2e/test_docs_browser.py)
# when they are missing (about 0.5 GB with their libraries). Never downloads a browser build of
# its own: only the distribution's packages, through apt, as root (CI) or through sudo. GitHub's
# Ubuntu runners already have Chrome and its driver, so google-chrome counts as a browser.
set -euo pipefail

exec bash "$(dirname "$0")/apt-install.sh" --else "or the browser test is skipped" \
    install-browser chromium="chromium|google-chrome" chromium-driver=chromedriver
