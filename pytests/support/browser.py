"""Serve a folder locally and drive a headless Chromium over it (no Selenium).

`serve_directory` runs Python's http.server on 127.0.0.1 in a thread. `HeadlessChromium`
starts chromedriver (Debian packages `chromium` and `chromium-driver`) and speaks the
W3C WebDriver protocol to it with urllib: open a URL, run JavaScript in the page (also
asynchronous JavaScript), take a screenshot. That is all the docs-site test and Grafana's
transformation code (support/transformations.py) need, without a browser-automation
dependency in the project.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class BrowserUnavailable(Exception):
    """Chromium or chromedriver is not installed; the message says how to install them."""


class BrowserError(Exception):
    """The browser or chromedriver misbehaved; the message carries its answer."""


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class HeadlessChromium:
    """One headless Chromium session through chromedriver; use as a context manager."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.chromium, self.driver = find_browser()
        self.timeout = timeout
        self.port = _free_port()
        self.profile = tempfile.TemporaryDirectory(prefix="buildqueue-chromium-")
        self.process: subprocess.Popen[bytes] | None = None
        self.session: str | None = None

    def __enter__(self) -> HeadlessChromium:
        self.process = subprocess.Popen(
            [self.driver, f"--port={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_for_driver()
            args = [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}"]
            answer = self._call(
                "POST",
                "/session",
                {
                    "capabilities": {
                        "alwaysMatch": {
                            "browserName": "chrome",
                            "goog:chromeOptions": {"binary": self.chromium, "args": args},
                        }
                    }
                },
            )
            self.session = answer["sessionId"]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the session, stop chromedriver (and with it Chromium), drop the profile."""
        if self.session is not None:
            with contextlib.suppress(BrowserError, OSError):
                self._call("DELETE", f"/session/{self.session}")
            self.session = None
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        self.profile.cleanup()

    def _wait_for_driver(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, BrowserError):
                if self._call("GET", "/status").get("ready"):
                    return
            time.sleep(0.2)
        raise BrowserError(f"chromedriver did not answer on port {self.port}")

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout * 2) as response:
                return json.loads(response.read() or b"{}").get("value")
        except urllib.error.HTTPError as error:
            raise BrowserError(
                f"{method} {path}: {error.read().decode(errors='replace')}"
            ) from error

    def open(self, url: str) -> None:
        """Navigate to ``url`` (returns when the page has loaded)."""
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run JavaScript in the page (a function body; ``arguments`` holds ``args``)."""
        return self._call(
            "POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)}
        )

    def run_async(self, script: str, *args: Any) -> Any:
        """Run asynchronous JavaScript; its result is what it passes to its last argument.

        The script gets ``args`` in ``arguments`` followed by a callback: call it once the
        work (a promise, say) is done. WebDriver's script timeout (30 s) bounds the wait.
        """
        return self._call(
            "POST", f"/session/{self.session}/execute/async", {"script": script, "args": list(args)}
        )

    def wait_for(self, script: str, timeout: float | None = None) -> Any:
        """Run ``script`` until it returns something truthy; return that."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.run(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for: {script}")
            time.sleep(0.25)

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to ``path``."""
        png = base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path
