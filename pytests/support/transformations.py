"""@grafana/data (pinned in grafana/transformations, bundled by esbuild) in headless Chromium."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from selenium.webdriver import Chrome

from buildqueue.paths import SCRATCH_DIR
from support.browser import headless_chromium, serve_directory
from support.grafana_files import GRAFANA_DIR

PACKAGE_DIR, BUNDLE_DIR = GRAFANA_DIR / "transformations", SCRATCH_DIR / "grafana-transformations"
FIELD_TYPES = {oid: "number" for oid in (20, 21, 23, 26, 700, 701, 1700)}  # ints, floats, numeric
FIELD_TYPES |= {1082: "time", 1114: "time", 1184: "time", 16: "boolean"}  # date, timestamp(tz)
APPLY = """const done = arguments[arguments.length - 1];
window.grafanaTransform(arguments[0], arguments[1]).then(
    (frames) => done({frames}), (error) => done({error: String(error.stack || error)}));"""


def _run(*command: str) -> None:
    done = subprocess.run(command, cwd=PACKAGE_DIR, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed in {PACKAGE_DIR}:\n{done.stderr}"


@dataclass
class GrafanaCode:
    """@grafana/data loaded in a Chromium page."""

    browser: Chrome

    def apply(self, transformations: list[Any], frames: list[Any]) -> list[dict[str, Any]]:
        """``transformDataFrame``: per frame drawn, its fields (name -> type) and rows."""
        answer = self.browser.execute_async_script(APPLY, frames, transformations)
        assert "error" not in answer, f"Grafana's transformation code failed: {answer['error']}"
        out = []
        for fields in (found["fields"] for found in answer["frames"]):
            types = {field["displayName"]: field["type"] for field in fields}
            rows = zip(*(field["values"] for field in fields), strict=True)
            out.append({"fields": types, "rows": [dict(zip(types, r, strict=True)) for r in rows]})
        return out

    def interval_seconds(self, start: datetime, end: datetime, max_points: int) -> int:
        """Grafana's ``$__interval`` (``rangeUtil.calculateInterval``) in whole seconds."""
        args = [int(t.timestamp() * 1000) for t in (start, end)] + [max_points, None]
        script = "return window.grafanaInterval(...arguments).intervalMs"
        return max(1, int(self.browser.execute_script(script, *args)) // 1000)


@contextmanager
def grafana_code() -> Iterator[GrafanaCode]:
    """npm ci (unless the pinned version is in), bundle, load in Chromium (BrowserUnavailable)."""
    BUNDLE_DIR.mkdir(parents=True, exist_ok=True)
    lock = json.loads((PACKAGE_DIR / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/@grafana/data"]["version"]
    installed = PACKAGE_DIR / "node_modules" / "@grafana" / "data" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != version:
        _run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
    _run(str(PACKAGE_DIR / "node_modules" / ".bin" / "esbuild"), "index.js", "--bundle",
         "--format=iife", "--platform=browser", "--target=es2020", "--log-level=error",
         '--define:process.env.NODE_ENV="production"', f'--define:GRAFANA_DATA_VERSION="{version}"',
         f"--outfile={BUNDLE_DIR / 'bundle.js'}")  # fmt: skip
    (BUNDLE_DIR / "index.html").write_text('<!doctype html><script src="bundle.js"></script>\n')
    with headless_chromium() as browser, serve_directory(BUNDLE_DIR) as base_url:
        browser.get(f"{base_url}index.html")
        loaded = browser.execute_script("return window.grafanaDataVersion || null")
        assert loaded == version, f"the bundle did not load: open {BUNDLE_DIR}/index.html"
        yield GrafanaCode(browser)


def frame(conn: psycopg.Connection, sql: str) -> dict[str, Any]:
    """A query's result as a DataFrameJSON (Grafana's wire format): times in epoch ms."""
    cur = conn.execute(sql)  # type: ignore[arg-type]
    columns, rows = cur.description or [], cur.fetchall()
    fields = [{"name": c.name, "type": FIELD_TYPES.get(c.type_code, "string")} for c in columns]
    values = [[_json(row[i]) for row in rows] for i in range(len(columns))]
    return {"schema": {"refId": "A", "fields": fields}, "data": {"values": values}}


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value.timestamp() * 1000 if isinstance(value, datetime) else value
