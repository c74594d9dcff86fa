"""The panels that reuse the Systems overview's rows, drawn by Grafana's own code.

Panels 2, 4 and 5 send no query: Grafana's Dashboard data source hands them the rows of
panel 1's query, and their transformations make what they draw. Here panel 1's SQL runs
on the example view (Grafana's macros expanded), its result becomes the data frame
Grafana's PostgreSQL data source sends the browser, and each panel's transformation list
runs through @grafana/data (the pinned npm package, bundled and loaded in headless
Chromium by support/transformations.py). What Grafana's code returned for each panel is
written to artifacts/grafana-transformations.json.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from buildqueue.paths import PROJECT_DIR
from buildqueue.perf.fleet import STATUS_CATALOGUE
from support import grafana_files, transformations
from support.browser import BrowserUnavailable
from support.example import EXPECTED_ROWS, LATEST_HEARTBEAT_AGE_SECONDS
from support.grafana_files import TimeRange
from support.scratch import EXAMPLE_SCHEMA as SOURCE_SCHEMA
from support.transformations import (
    Frame,
    GrafanaTransformations,
    TransformationError,
    TransformationsUnavailable,
    query_frame,
)

DASHBOARD_RANGE = TimeRange.last(timedelta(days=30))
"""The dashboard's default time range (now-30d .. now); panel 1's query uses no macro."""
REPORT = PROJECT_DIR / "artifacts" / "grafana-transformations.json"
OVERVIEW_COLUMNS = [
    "system_name",
    "health",
    "commit_timestamp",
    "progress",
    "completed_packages",
    "building_packages",
    "pending_packages",
    "cached_packages",
    "total_packages",
    "active_workers",
    "workers",
    "latest_heartbeat",
    "status",
    "cache_status",
    "git_commit_hash",
]
"""What the Systems overview table shows (its query has two more columns for others)."""


# the session's example, reloaded first when its load-relative heartbeats got old
pytestmark = pytest.mark.usefixtures("fresh_example")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return grafana_files.load_dashboard()


@pytest.fixture(scope="module")
def grafana_code() -> Iterator[GrafanaTransformations]:
    try:
        with GrafanaTransformations() as code:
            yield code
    except (TransformationsUnavailable, BrowserUnavailable) as error:
        pytest.skip(f"Grafana's transformation code cannot run here: {error}")


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    """What Grafana's code returned, per panel and case; written when the module ends."""
    results: dict[str, Any] = {}
    yield results
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(results, indent=2, default=str) + "\n")


def _panel(dashboard: dict, title: str) -> dict[str, Any]:
    (panel,) = [p for p in grafana_files.panels(dashboard) if p["title"] == title]
    return panel


def _source_frame(dashboard: dict, conn: psycopg.Connection) -> dict[str, Any]:
    """Panel 1's query on the current database: the one view query of a refresh."""
    (target,) = [
        target
        for panel, target in grafana_files.view_queries(dashboard)
        if panel["id"] not in grafana_files.VIEW_QUERY_EXCEPTIONS
    ]
    return query_frame(conn, target["rawSql"], DASHBOARD_RANGE, target["refId"])


def _draw(
    code: GrafanaTransformations,
    dashboard: dict,
    title: str,
    conn: psycopg.Connection,
    report: dict[str, Any],
    case: str = "example",
) -> Frame:
    """The one frame Grafana's code makes of the panel's input on the current database."""
    panel = _panel(dashboard, title)
    if grafana_files.is_dashboard_datasource(panel["datasource"]):
        assert grafana_files.source_panel(dashboard, panel)["id"] == 1
    frames = code.apply(panel.get("transformations", []), [_source_frame(dashboard, conn)])
    report.setdefault(title, {})[case] = [frame.as_json() for frame in frames]
    (frame,) = frames
    return frame


def _status_id(name: str) -> int:
    with STATUS_CATALOGUE.open(newline="") as catalogue:
        (row,) = [row for row in csv.DictReader(catalogue) if row["name"] == name]
    return int(row["id"])


def test_the_pinned_grafana_data_runs(grafana_code: GrafanaTransformations) -> None:
    assert grafana_code.version.startswith("12.")  # the dashboard's schemaVersion 41 is Grafana 12


def test_systems_overview_hides_the_columns_only_other_panels_need(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection, report: dict
) -> None:
    frame = _draw(grafana_code, dashboard, "Systems overview", conn, report)
    assert frame.names == OVERVIEW_COLUMNS
    assert [(r["system_name"], r["health"]) for r in frame.rows()] == [
        ("server-a", "building"),
        ("server-b", "ready"),
        ("server-c", "stale"),
    ]
    assert [r["progress"] for r in frame.rows()] == [0.7, 1, 0.9]


def test_worker_distribution(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection, report: dict
) -> None:
    frame = _draw(grafana_code, dashboard, "Worker distribution", conn, report)
    assert frame.names == ["system_name", "active_workers"]
    assert frame.types == ["string", "number"]
    assert [(r["system_name"], r["active_workers"]) for r in frame.rows()] == [
        ("server-c", 3),
        ("server-a", 2),
        ("server-b", 0),
    ]


def test_worker_distribution_breaks_ties_by_name(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection, report: dict
) -> None:
    with conn.transaction(force_rollback=True):
        # server-b gets two workers, like server-a, and the newest commit, so it comes
        # before server-a in panel 1's rows: the tie is still broken by name
        conn.execute(
            f"update {SOURCE_SCHEMA}.commits set commit_timestamp = '2024-01-16' where id = 2"
        )
        conn.execute(
            f"insert into {SOURCE_SCHEMA}.build_reservations "
            "(id, worker_id, derivation_id, nixos_derivation_id, reserved_at, heartbeat_at) "
            "values (901, 'worker-8', 201, 2, now(), now()), "
            "(902, 'worker-9', 202, 2, now(), now())"
        )
        frame = _draw(grafana_code, dashboard, "Worker distribution", conn, report, "tie")
    assert [(r["system_name"], r["active_workers"]) for r in frame.rows()] == [
        ("server-c", 3),
        ("server-a", 2),
        ("server-b", 2),
    ]


def test_stale_workers_shows_only_server_c(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection, report: dict
) -> None:
    frame = _draw(grafana_code, dashboard, "Stale workers", conn, report)
    assert frame.names == [
        "system_name",
        "workers",
        "latest_heartbeat",
        "seconds_since_heartbeat",
        "building_packages",
    ]
    assert frame.types == ["string", "string", "time", "number", "number"]
    (row,) = frame.rows()
    assert (row["system_name"], row["workers"], row["building_packages"]) == (
        "server-c",
        "worker-2, worker-3, worker-4",
        3,
    )
    # the newest of server-c's heartbeats is 600 s old at load time
    assert LATEST_HEARTBEAT_AGE_SECONDS["server-c"] <= row["seconds_since_heartbeat"] < 3600
    assert [e["system_name"] for e in EXPECTED_ROWS if e["has_stale_workers"]] == ["server-c"]


def test_stale_workers_oldest_heartbeat_first(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection, report: dict
) -> None:
    with conn.transaction(force_rollback=True):
        # server-a's workers go silent for 6 minutes: stale, but heard from after
        # server-c's (10 minutes), which comes first although panel 1 lists it last
        conn.execute(
            f"update {SOURCE_SCHEMA}.build_reservations "
            "set heartbeat_at = now() - interval '6 minutes' where nixos_derivation_id = 1"
        )
        frame = _draw(grafana_code, dashboard, "Stale workers", conn, report, "two stale")
    assert [r["system_name"] for r in frame.rows()] == ["server-c", "server-a"]
    assert [r["latest_heartbeat"] for r in frame.rows()] == sorted(
        r["latest_heartbeat"] for r in frame.rows()
    )


def test_cache_push_lag(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection, report: dict
) -> None:
    frame = _draw(grafana_code, dashboard, "Cache push lag", conn, report)
    assert frame.names == ["systems_waiting_for_cache_push", "packages_built_not_pushed"]
    assert frame.types == ["number", "number"]
    # No system is fully built yet not fully pushed (server-c is still building: doc block
    # departure_server_c_cache_status); 2 + 0 + 5 packages are built but not pushed.
    expected = sum(e["completed_packages"] - e["cached_packages"] for e in EXPECTED_ROWS)
    assert frame.rows() == [
        {"systems_waiting_for_cache_push": 0, "packages_built_not_pushed": expected}
    ]
    assert expected == 7


def test_cache_push_lag_counts_a_system_waiting_for_its_push(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection, report: dict
) -> None:
    with conn.transaction(force_rollback=True):
        # one of server-b's three pushed packages is only built: server-b waits for the cache
        conn.execute(
            f"update {SOURCE_SCHEMA}.derivations set status_id = %s where id = 201",
            [_status_id("build-complete")],
        )
        waiting = conn.execute(
            "select system_name from view_build_queue_status "
            "where cache_status = 'waiting_for_cache_push'"
        ).fetchall()
        frame = _draw(grafana_code, dashboard, "Cache push lag", conn, report, "server-b waits")
    assert waiting == [("server-b",)]
    assert frame.rows() == [{"systems_waiting_for_cache_push": 1, "packages_built_not_pushed": 8}]


def test_an_empty_queue(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection, report: dict
) -> None:
    with conn.transaction(force_rollback=True):
        failed = _status_id("build-failed")
        conn.execute(f"update {SOURCE_SCHEMA}.derivations set status_id = %s", [failed])
        assert conn.execute("select count(*) from view_build_queue_status").fetchone() == (0,)
        drawn = {
            title: _draw(grafana_code, dashboard, title, conn, report, "empty queue")
            for title in ("Worker distribution", "Stale workers", "Cache push lag")
        }
    assert drawn["Worker distribution"].length == 0
    assert drawn["Stale workers"].length == 0
    # the gauge shows zeros, not "No data"
    assert drawn["Cache push lag"].rows() == [
        {"systems_waiting_for_cache_push": 0, "packages_built_not_pushed": 0}
    ]


def test_a_transformation_grafana_data_lacks_is_an_error(
    grafana_code: GrafanaTransformations, dashboard: dict, conn: psycopg.Connection
) -> None:
    # partitionByValues is registered by Grafana's app, not shipped in @grafana/data
    with pytest.raises(TransformationError, match="partitionByValues are not among"):
        grafana_code.apply(
            [{"id": "partitionByValues", "options": {"fields": ["status"]}}],
            [_source_frame(dashboard, conn)],
        )


def test_without_npm_the_install_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transformations, "_installed_version", lambda: None)
    monkeypatch.setattr(transformations.shutil, "which", lambda name: None)
    with pytest.raises(TransformationsUnavailable, match=r"npm not found\. Fix: install Node"):
        transformations.install()
