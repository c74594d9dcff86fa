"""Serve a folder on 127.0.0.1 and open it in headless Chromium through Selenium.

`serve_directory` runs Python's http.server in a thread. `headless_chromium` yields a
Selenium ``WebDriver`` on Debian's ``chromium`` and ``chromedriver`` (packages
``chromium`` and ``chromium-driver``), found on PATH and handed to Selenium by path, so
Selenium Manager never runs and nothing is downloaded. The docs-site test and Grafana's
transformation code (support/transformations.py) use it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
INSTALL_HINT = "apt-get install -y chromium chromium-driver"
TIMEOUT_SECONDS = 30
"""How long a page's script (also asynchronous) or a `wait_for` may take."""


class BrowserUnavailable(Exception):
    """Chromium or chromedriver is not installed; the message says how to install them."""


def find_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver, or `BrowserUnavailable`."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        missing = [
            name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path
        ]
        raise BrowserUnavailable(f"{' and '.join(missing)} not found. Fix: {INSTALL_HINT}")
    return chromium, driver


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def headless_chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium session; `BrowserUnavailable` when it is not installed.

    The explicit driver path makes Selenium skip Selenium Manager (which would look for,
    and download, a Chrome and a driver of its own); the explicit binary makes chromedriver
    start Debian's Chromium. Scripts get `TIMEOUT_SECONDS`.
    """
    chromium, driver = find_browser()
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # Chromium leaves its singleton socket folder in TMPDIR: give it one that goes away
    with tempfile.TemporaryDirectory(prefix="buildqueue-chromium-") as tmp:
        service = Service(executable_path=driver, env={**os.environ, "TMPDIR": tmp})
        browser = webdriver.Chrome(service=service, options=options)
        try:
            browser.set_script_timeout(TIMEOUT_SECONDS)
            yield browser
        finally:
            browser.quit()


def wait_for(browser: webdriver.Chrome, script: str, timeout: float = TIMEOUT_SECONDS) -> Any:
    """Run ``script`` in the page until it returns something truthy; return that."""
    return WebDriverWait(browser, timeout, poll_frequency=0.25).until(
        lambda page: page.execute_script(script), f"timed out waiting for: {script}"
    )


def screenshot(browser: webdriver.Chrome, path: Path) -> Path:
    """Save a PNG of the viewport to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(browser.get_screenshot_as_png())
    return path
