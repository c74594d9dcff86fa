"""Grafana's own transformation code (@grafana/data) in headless Chromium, on real rows.

``npm ci`` installs the pinned package in grafana/transformations (once), esbuild bundles
its index.js (@grafana/data needs a browser's ``window``), and `grafana_code` loads the
bundle in Chromium (`support.browser`). `frame` turns a query's result into the data frame
Grafana's PostgreSQL data source sends the browser.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from selenium.webdriver import Chrome

from buildqueue.paths import SCRATCH_DIR
from support.browser import headless_chromium, serve_directory
from support.grafana_files import GRAFANA_DIR

PACKAGE_DIR = GRAFANA_DIR / "transformations"
BUNDLE_DIR = SCRATCH_DIR / "grafana-transformations"
NUMBER_OIDS = {20, 21, 23, 26, 700, 701, 1700}  # int8/2/4, oid, float4/8, numeric
TIME_OIDS = {1082, 1114, 1184}  # date, timestamp, timestamptz
APPLY = """const done = arguments[arguments.length - 1];
window.grafanaTransform(arguments[0], arguments[1]).then(
    (frames) => done({frames}), (error) => done({error: String(error.stack || error)}));"""


def _run(*command: str) -> None:
    """Run a build step in PACKAGE_DIR; a failure raises with its output."""
    done = subprocess.run(command, cwd=PACKAGE_DIR, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed in {PACKAGE_DIR}:\n{done.stderr}")


def build_bundle() -> str:
    """Install the pinned @grafana/data unless present, bundle index.js; return its version."""
    lock = json.loads((PACKAGE_DIR / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/@grafana/data"]["version"]
    installed = PACKAGE_DIR / "node_modules" / "@grafana" / "data" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != version:
        _run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
    BUNDLE_DIR.mkdir(parents=True, exist_ok=True)
    _run(str(PACKAGE_DIR / "node_modules" / ".bin" / "esbuild"), "index.js", "--bundle",
         "--format=iife", "--platform=browser", "--target=es2020", "--log-level=error",
         '--define:process.env.NODE_ENV="production"', f'--define:GRAFANA_DATA_VERSION="{version}"',
         f"--outfile={BUNDLE_DIR / 'bundle.js'}")  # fmt: skip
    (BUNDLE_DIR / "index.html").write_text('<!doctype html><script src="bundle.js"></script>\n')
    return version


class GrafanaCode:
    """@grafana/data loaded in a Chromium page."""

    def __init__(self, browser: Chrome, version: str) -> None:
        self.browser, self.version = browser, version

    def apply(self, transformations: list[Any], frames: list[Any]) -> list[dict[str, Any]]:
        """``transformDataFrame``: per frame drawn, its fields (name -> type) and rows."""
        answer = self.browser.execute_async_script(APPLY, frames, transformations)
        if "error" in answer:
            raise RuntimeError(f"Grafana's transformation code failed: {answer['error']}")
        return [
            {
                "fields": {f["displayName"]: f["type"] for f in fr["fields"]},
                "rows": [
                    dict(zip([f["displayName"] for f in fr["fields"]], values, strict=True))
                    for values in zip(*(f["values"] for f in fr["fields"]), strict=True)
                ],
            }
            for fr in answer["frames"]
        ]

    def interval_seconds(self, start: datetime, end: datetime, max_points: int) -> int:
        """Grafana's ``$__interval`` (``rangeUtil.calculateInterval``) in whole seconds."""
        args = [int(t.timestamp() * 1000) for t in (start, end)] + [max_points, None]
        script = "return window.grafanaInterval(...arguments).intervalMs"
        return max(1, int(self.browser.execute_script(script, *args)) // 1000)


@contextmanager
def grafana_code() -> Iterator[GrafanaCode]:
    """The bundle loaded in headless Chromium (`support.browser.BrowserUnavailable`)."""
    version = build_bundle()
    with headless_chromium() as browser, serve_directory(BUNDLE_DIR) as base_url:
        browser.get(f"{base_url}index.html")
        loaded = browser.execute_script("return window.grafanaDataVersion || null")
        assert loaded == version, f"the bundle did not load: open {BUNDLE_DIR}/index.html"
        yield GrafanaCode(browser, version)


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):  # times travel as epoch milliseconds
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000
    return value


def frame(conn: psycopg.Connection, sql: str) -> dict[str, Any]:
    """A query's result as a DataFrameJSON (Grafana's wire format), refId A."""
    cur = conn.execute(sql)  # type: ignore[arg-type]
    columns = cur.description or []
    types = ["number" if c.type_code in NUMBER_OIDS else "time" if c.type_code in TIME_OIDS
             else "boolean" if c.type_code == 16 else "string" for c in columns]  # fmt: skip
    rows = cur.fetchall()
    return {
        "schema": {"refId": "A", "fields": [
            {"name": c.name, "type": t} for c, t in zip(columns, types, strict=True)]},
        "data": {"values": [[_json(row[i]) for row in rows] for i in range(len(columns))]},
    }  # fmt: skip
