"""Debian's chromium, headless, driven by selenium through Debian's chromedriver.

Nothing is downloaded: both binaries come from apt (``scripts/install-browser.sh``, run by
``make test``), and selenium is given their paths so its driver manager never runs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,2400",
)


def browser_binaries() -> tuple[str, str]:
    """(chromium, chromedriver), or skip (fail in CI, where make test installs them)."""
    chromium = shutil.which("chromium") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = "Debian's chromium and chromedriver are not installed (`make browser` installs them)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def chromium(profile: Path) -> Iterator[WebDriver]:
    """A fresh headless chromium with its own profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = browser_binaries()
    options = Options()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # Every network request (DevTools events) and the console, for network_log/console_log.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    os.environ["SE_OFFLINE"] = "true"  # selenium's driver manager must not look online
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class Request:
    """One request the page made: its URL, and why it never left if it was blocked."""

    url: str
    blocked: str | None  # Chromium's blockedReason ("csp", ...), None if it was sent

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


def network_log(driver: Any) -> list[Request]:
    """The network requests since the last call (http and https only: data: and blob: URLs
    never leave the browser)."""
    urls: dict[str, str] = {}
    blocked: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
            blocked[params["requestId"]] = params["blockedReason"]
    return [
        Request(url, blocked.get(request_id))
        for request_id, url in urls.items()
        if url.startswith(("http://", "https://"))
    ]


def console_log(driver: Any) -> list[str]:
    """The console messages since the last call (CSP violations are reported there)."""
    return [entry["message"] for entry in driver.get_log("browser")]
