"""Headless Chromium via Selenium on Debian's chromium and chromedriver, by path: no download."""

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
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
FLAGS += ["--disable-background-networking", "--no-first-run", "--window-size=1400,1000"]
TIMEOUT_SECONDS = 30


class BrowserUnavailable(Exception):
    """Chromium or chromedriver is not installed; the message says how to install them."""


def find_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver, or `BrowserUnavailable`."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise BrowserUnavailable("Fix: apt-get install -y chromium chromium-driver")
    return chromium, driver


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None: ...  # keep the test output clean


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


@contextlib.contextmanager
def headless_chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium session; its temporary files (TMPDIR) go with it."""
    chromium, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="buildqueue-chromium-") as tmp:
        service = Service(executable_path=driver, env={**os.environ, "TMPDIR": tmp})
        with webdriver.Chrome(service=service, options=options) as browser:  # quits after
            browser.set_script_timeout(TIMEOUT_SECONDS)
            yield browser


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
