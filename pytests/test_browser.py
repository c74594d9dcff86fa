"""The headless browser is Debian's Chromium, driven by Selenium without downloads.

`support.browser.headless_chromium` hands Selenium the paths of ``chromium`` and
``chromedriver``; Selenium Manager (which would fetch a browser and a driver of its own
from the network) must never run, and Chromium's temporary files go with the session.
Without them, the message names the apt command.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from selenium.webdriver.common.selenium_manager import SeleniumManager

from support import browser
from support.browser import BrowserUnavailable, find_browser, headless_chromium


def test_selenium_drives_the_installed_chromium_without_selenium_manager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    try:
        chromium, driver = find_browser()
    except BrowserUnavailable as error:
        pytest.skip(f"headless Chromium is not installed here: {error}")

    def no_download(*args: object) -> None:
        raise AssertionError("Selenium Manager ran: it would download a browser or a driver")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_download)
    with headless_chromium() as session:
        assert session.service.path == driver
        assert session.execute_async_script("arguments[arguments.length - 1](6 * 7)") == 42
        version = session.capabilities["browserVersion"]
        # Chromium keeps its temporary files (its singleton socket) in the session's folder
        scratch = Path(session.service.env["TMPDIR"])
        assert list(scratch.glob("org.chromium.Chromium.*"))
    assert not scratch.exists()  # and they went with the session
    # the browser that ran is the one on PATH (`chromium --version`: "Chromium 156.0.x ...")
    installed = subprocess.run([chromium, "--version"], capture_output=True, text=True, check=True)
    assert version in installed.stdout.split()


def test_without_chromium_the_message_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    with (
        pytest.raises(
            BrowserUnavailable,
            match=r"chromium and chromedriver not found\. "
            r"Fix: apt-get install -y chromium chromium-driver",
        ),
        headless_chromium(),
    ):
        pass
