"""Run dashboard panels' transformations with Grafana's own code, on real query results.

Grafana applies a panel's ``transformations`` in the browser with the code of the npm
package ``@grafana/data``. This module runs that code, not a re-implementation of it:

1. ``install`` puts the pinned package in ``grafana/transformations/node_modules``
   (``npm ci`` from the committed package.json and package-lock.json) when it is missing;
2. ``build_bundle`` bundles ``grafana/transformations/index.js`` with esbuild into one
   script (``@grafana/data`` needs a browser's ``window``; it does not load in plain Node);
3. `GrafanaTransformations` loads that script in headless Chromium (Selenium, through
   `support.browser`) and applies a transformation list to data frames;
4. ``query_frame`` turns a query's result into the data frame Grafana's PostgreSQL data
   source hands the browser (numbers, times as epoch milliseconds, strings, booleans).

A panel on Grafana's Dashboard data source gets the frames of the panel it names, so its
transformations applied to that panel's query result are what it draws.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from selenium.webdriver import Chrome

from buildqueue.paths import SCRATCH_DIR
from support.browser import headless_chromium, serve_directory
from support.grafana_files import GRAFANA_DIR, TimeRange, expand_macros

PACKAGE_DIR = GRAFANA_DIR / "transformations"
"""package.json, package-lock.json (the pinned @grafana/data) and the bundle's entry."""

BUNDLE_DIR = SCRATCH_DIR / "grafana-transformations"
"""Where the bundle and the page that loads it are written (git-ignored)."""

NODE_HINT = "install Node.js 20 or later with npm (Debian: apt-get install -y nodejs npm)"

# PostgreSQL type oids -> Grafana field types, as the PostgreSQL data source converts them
_NUMBER_TYPES = {20, 21, 23, 26, 700, 701, 1700}  # int8, int2, int4, oid, float4/8, numeric
_TIME_TYPES = {1082, 1114, 1184}  # date, timestamp, timestamptz
_BOOLEAN_TYPES = {16}


class TransformationsUnavailable(Exception):
    """Node.js or npm is missing here; the message says how to install it."""


class TransformationError(Exception):
    """Installing, bundling or running Grafana's code failed; the message says what and why."""


# --- install and bundle ----------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise TransformationsUnavailable(f"{name} not found. Fix: {NODE_HINT}")
    return path


def grafana_data_version() -> str:
    """The @grafana/data version package-lock.json pins."""
    lock = json.loads((PACKAGE_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/@grafana/data"]["version"])


def _installed_version() -> str | None:
    manifest = PACKAGE_DIR / "node_modules" / "@grafana" / "data" / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text())["version"])


def install() -> None:
    """``npm ci`` in grafana/transformations unless the pinned @grafana/data is installed."""
    if _installed_version() == grafana_data_version():
        return
    npm = _tool("npm")
    _tool("node")
    print(
        f"installing Grafana's transformation code (@grafana/data {grafana_data_version()}): "
        f"npm ci in {PACKAGE_DIR} ...",
        file=sys.stderr,
    )
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PACKAGE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise TransformationError(
            f"npm ci in {PACKAGE_DIR} failed:\n{result.stderr.strip()}\n"
            "Fix: the npm registry must be reachable once (or copy node_modules from a "
            "machine where it ran); package-lock.json must match package.json."
        )


def build_bundle() -> Path:
    """Bundle index.js with esbuild; return the folder holding bundle.js and index.html."""
    install()
    esbuild = PACKAGE_DIR / "node_modules" / ".bin" / "esbuild"
    BUNDLE_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            str(esbuild),
            str(PACKAGE_DIR / "index.js"),
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--target=es2020",
            "--log-level=error",
            '--define:process.env.NODE_ENV="production"',
            f'--define:GRAFANA_DATA_VERSION="{grafana_data_version()}"',
            f"--outfile={BUNDLE_DIR / 'bundle.js'}",
        ],
        cwd=PACKAGE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise TransformationError(f"esbuild could not bundle {PACKAGE_DIR}:\n{result.stderr}")
    (BUNDLE_DIR / "index.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8">'
        '<script src="bundle.js"></script></head><body></body></html>\n'
    )
    return BUNDLE_DIR


# --- data frames -------------------------------------------------------------------------


def _field_type(type_oid: int) -> str:
    if type_oid in _NUMBER_TYPES:
        return "number"
    if type_oid in _TIME_TYPES:
        return "time"
    if type_oid in _BOOLEAN_TYPES:
        return "boolean"
    return "string"


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp() * 1000
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC).timestamp() * 1000
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def data_frame(
    columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[Any]], ref_id: str = "A"
) -> dict[str, Any]:
    """A DataFrameJSON (Grafana's wire format) from (name, PostgreSQL type oid) and rows."""
    return {
        "schema": {
            "refId": ref_id,
            "fields": [{"name": name, "type": _field_type(oid)} for name, oid in columns],
        },
        "data": {"values": [[_json_value(row[i]) for row in rows] for i in range(len(columns))]},
    }


def query_frame(
    conn: psycopg.Connection, sql: str, time_range: TimeRange, ref_id: str = "A"
) -> dict[str, Any]:
    """Run a panel's SQL (Grafana's macros expanded) and return its result as a frame."""
    with conn.cursor() as cur:
        cur.execute(expand_macros(sql, time_range))
        columns = [(column.name, column.type_code) for column in cur.description or []]
        return data_frame(columns, cur.fetchall(), ref_id)


@dataclass(frozen=True)
class Frame:
    """One data frame a transformation list returned: fields by display name, in order."""

    names: list[str]
    types: list[str]
    columns: list[list[Any]]

    @property
    def length(self) -> int:
        """The number of rows."""
        return len(self.columns[0]) if self.columns else 0

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by the fields' display names."""
        return [
            {name: column[i] for name, column in zip(self.names, self.columns, strict=True)}
            for i in range(self.length)
        ]

    def as_json(self) -> dict[str, Any]:
        """Field names, types and rows, for a report."""
        return {"fields": dict(zip(self.names, self.types, strict=True)), "rows": self.rows()}


# --- running -------------------------------------------------------------------------------

_APPLY = """
const done = arguments[arguments.length - 1];
window.grafanaTransform(arguments[0], arguments[1]).then(
    (frames) => done({frames: frames}),
    (error) => done({error: String((error && error.stack) || error)}),
);
"""


class GrafanaTransformations:
    """@grafana/data loaded in headless Chromium; use as a context manager.

    Raises `TransformationsUnavailable` (no Node.js/npm) or
    `support.browser.BrowserUnavailable` (no Chromium) when it cannot run here.
    """

    def __init__(self) -> None:
        self.version = grafana_data_version()
        self._stack = ExitStack()
        self._browser: Chrome | None = None

    def __enter__(self) -> GrafanaTransformations:
        bundle = build_bundle()
        try:
            self._browser = self._stack.enter_context(headless_chromium())
            base_url = self._stack.enter_context(serve_directory(bundle))
            self._browser.get(f"{base_url}index.html")
            loaded = self._browser.execute_script("return window.grafanaDataVersion || null")
        except BaseException:
            self._stack.close()
            raise
        if loaded != self.version:
            self._stack.close()
            raise TransformationError(
                f"the bundle did not load in Chromium (got {loaded!r}, expected @grafana/data "
                f"{self.version}); open {bundle / 'index.html'} in a browser to see why"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._browser = None

    def interval(self, start: datetime, end: datetime, max_points: int) -> str:
        """Grafana's ``$__interval`` for a panel (``rangeUtil.calculateInterval``), e.g. "3h"."""
        if self._browser is None:
            raise TransformationError("use GrafanaTransformations as a context manager")
        script = "return window.grafanaInterval(...arguments).interval"
        start_ms, end_ms = (int(t.timestamp() * 1000) for t in (start, end))
        return str(self._browser.execute_script(script, start_ms, end_ms, max_points, None))

    def apply(
        self, transformations: list[dict[str, Any]], frames: list[dict[str, Any]]
    ) -> list[Frame]:
        """Grafana's ``transformDataFrame(transformations, frames)``: the frames a panel draws."""
        if self._browser is None:
            raise TransformationError("use GrafanaTransformations as a context manager")
        answer = self._browser.execute_async_script(_APPLY, frames, transformations)
        if "error" in answer:
            raise TransformationError(f"Grafana's transformation code failed: {answer['error']}")
        return [
            Frame(
                names=[field["displayName"] for field in frame["fields"]],
                types=[field["type"] for field in frame["fields"]],
                columns=[field["values"] for field in frame["fields"]],
            )
            for frame in answer["frames"]
        ]
