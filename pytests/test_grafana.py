"""grafana/ is wired; its panels' SQL, alerts and drawn transformations fit the example."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.rows import dict_row
from selenium.webdriver.common.selenium_manager import SeleniumManager

from buildqueue.database import Database
from buildqueue.perf.corpus import expand
from buildqueue.sampler import SAMPLE_MODEL
from support import grafana_files as files
from support.browser import BrowserUnavailable
from support.example import EXPECTED_ROWS, LATEST_HEARTBEAT_AGE_SECONDS
from support.grafana_checks import evaluate_rule
from support.scratch import EXAMPLE_SCHEMA, ScratchSchemas
from support.transformations import GrafanaCode, frame, grafana_code

DASHBOARD = files.load_dashboard()
PANEL = {p["title"]: p for p in DASHBOARD["panels"]}  # titles: one each, by PANELS below
OVERVIEW_SQL = PANEL["Systems overview"]["targets"][0]["rawSql"]
HISTORY = PANEL["Queue depth over time"]
ALERTS = files.alert_rules(files.load_yaml(files.ALERTING_FILE))
CHANGES = {  # to the example, each in a rolled-back transaction
    "example": "",
    "silent hour": """update {src}.build_reservations set heartbeat_at = now() - interval '1 hour';
        update build_queue_samples set latest_heartbeat = now() - interval '1 hour'""",
    "tie": """update {src}.commits set commit_timestamp = '2024-01-16' where id = 2;
        insert into {src}.build_reservations (id, worker_id, derivation_id, nixos_derivation_id,
        reserved_at, heartbeat_at) values (901, 'worker-8', 201, 2, now(), now()),
        (902, 'worker-9', 202, 2, now(), now())""",
    "two stale": """update {src}.build_reservations
        set heartbeat_at = now() - interval '6 minutes' where nixos_derivation_id = 1""",
    "server-b waits": """update {src}.derivations set status_id = (select id
        from {src}.derivation_statuses where name = 'build-complete') where id = 201""",
    "empty queue": """update {src}.derivations set status_id = (select id
        from {src}.derivation_statuses where name = 'build-failed')""",
}
SOURCE_UID = "buildqueue-postgres"
PANELS = [  # the spec's five; 2, 4 and 5 reuse panel 1's rows: one view query a refresh
    ("Systems overview", "table", SOURCE_UID, None),
    ("Worker distribution", "barchart", files.DASHBOARD_DATASOURCE_UID, (1, False)),
    ("Queue depth over time", "timeseries", SOURCE_UID, None),
    ("Stale workers", "table", files.DASHBOARD_DATASOURCE_UID, (1, False)),
    ("Cache push lag", "gauge", files.DASHBOARD_DATASOURCE_UID, (1, False)),
]
RULES = {  # uid: (for, reducer, threshold, its parameter, linked panel)
    "buildqueue-stale-workers": ("10m", "last", "gt", [0], 4),
    "buildqueue-queue-growing": ("0s", "last", "gt", [500], 3),
    "buildqueue-stuck-building": ("0s", "last", "gt", [0], 1),
    "buildqueue-queue-growing-window": ("0s", "last", "gt", [0], 3),
    "buildqueue-queue-stalled": ("0s", "last", "gt", [0], 2),
}
JAN_14, JAN_15 = datetime(2024, 1, 14, 9, tzinfo=UTC), datetime(2024, 1, 15, 10, tzinfo=UTC)


@contextmanager
def changed(conn: psycopg.Connection, name: str) -> Iterator[None]:
    """The example with one of `CHANGES` applied, rolled back after."""
    with conn.transaction(force_rollback=True):
        for statement in filter(None, CHANGES[name].format(src=EXAMPLE_SCHEMA).split(";")):
            conn.execute(statement)  # type: ignore[arg-type]
        yield


def run(conn: psycopg.Connection, query: str, since: datetime, interval: int = 60) -> list[dict]:
    """A panel's SQL from ``since`` to now, one point per ``interval`` seconds."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(expand(query, datetime.now(UTC) - since, interval)).fetchall()  # type: ignore[arg-type]


def test_provisioning_files_are_wired() -> None:
    """Data source, provider, the spec's five panels, one view query, each rule's chain."""
    (source,) = files.load_yaml(files.DATASOURCES_FILE)["datasources"]
    (provider,) = files.load_yaml(files.DASHBOARD_PROVIDERS_FILE)["providers"]
    assert (source["uid"], source["type"]) == (SOURCE_UID, "grafana-postgresql-datasource")
    secrets = [source["url"], source["user"], *source["secureJsonData"].values()]
    assert all(re.fullmatch(r"(\$\{[A-Z_]+\}:?)+", value) for value in secrets), secrets
    assert (DASHBOARD["uid"], provider["type"]) == ("buildqueue-status", "file")
    for p, expected in zip(DASHBOARD["panels"], PANELS, strict=True):
        reused = [t.get("panelId") and (t["panelId"], t["withTransforms"]) for t in p["targets"]]
        assert (p["title"], p["type"], p["datasource"]["uid"], *reused) == expected
    assert "from build_queue_samples" in HISTORY["targets"][0]["rawSql"]
    wiring = {}
    for group, rule in ALERTS:
        nodes = {node["refId"]: node for node in rule["data"]}
        reduce, threshold = nodes["B"]["model"], nodes[rule["condition"]]["model"]
        (evaluator,) = [condition["evaluator"] for condition in threshold["conditions"]]
        # time_series: the only format Grafana alerts take from SQL
        chain = (nodes["A"]["datasourceUid"], nodes["A"]["model"]["format"], reduce["type"],
                 reduce["expression"], threshold["type"], threshold["expression"])  # fmt: skip
        assert chain == (SOURCE_UID, "time_series", "reduce", "A", "threshold", "B")
        assert (group["folder"], rule["dashboardUid"]) == (provider["folder"], DASHBOARD["uid"])
        # Grafana interpolates $VARS from its environment in alert files, except annotations
        assert "$" not in yaml.safe_dump({k: v for k, v in rule.items() if k != "annotations"})
        wiring[rule["uid"]] = (rule["for"], reduce["reducer"], evaluator["type"],
                               evaluator["params"], rule["panelId"])  # fmt: skip
    assert wiring == RULES


def test_systems_overview_query(conn: psycopg.Connection) -> None:
    rows = run(conn, OVERVIEW_SQL, JAN_14)
    assert [(r["system_name"], r["health"], r["progress"], r["workers"]) for r in rows] == [
        ("server-a", "building", Decimal("0.7"), "worker-0, worker-1"),
        ("server-b", "ready", 1, ""),
        ("server-c", "stale", Decimal("0.9"), "worker-2, worker-3, worker-4"),
    ]
    assert [r["commit_timestamp"] for r in rows] == [e["commit_timestamp"] for e in EXPECTED_ROWS]


def test_queue_depth_query(database: Database, samples_project: Any, samples_schema: str) -> None:
    """Two planted January 2024 samples, then the build's; $__timeFilter drops the older."""
    query = HISTORY["targets"][0]["rawSql"]
    with database.connect(options=f"-c search_path={samples_schema}") as conn:
        (taken_at,) = conn.execute(f"select max(sampled_at) from {SAMPLE_MODEL}").fetchone()  # type: ignore[misc]
        for moment, pending, building in [(JAN_14, 9, 4), (JAN_15, 6, 5)]:
            conn.execute(f"insert into {SAMPLE_MODEL} values (%s, %s, 3, 2, 1, 1, %s, %s, 0, 0, 5)",
                         [moment, moment, pending, building])  # type: ignore[arg-type]  # fmt: skip
        points = [(r["time"], r["pending_packages"], r["work_remaining"])
                  for r in run(conn, query, datetime(2024, 1, 1, tzinfo=UTC))]  # fmt: skip
        later = [r["time"] for r in run(conn, query, datetime(2024, 1, 15, tzinfo=UTC))]
    # epoch seconds, oldest first; the build's sample: the example's 3 pending, 5 building
    epoch = [moment.timestamp() for moment in (JAN_14, JAN_15, taken_at)]
    assert points == [(epoch[0], 9, 13), (epoch[1], 6, 11), (epoch[2], 3, 8)]
    assert later == epoch[1:]


@pytest.mark.parametrize(("uid", "case", "value", "firing"), [
    ("buildqueue-stale-workers", "example", 1, True),  # server-c
    ("buildqueue-queue-growing", "example", 8, False),  # 3 + 0 + 5 packages; 500
    ("buildqueue-stuck-building", "example", 1, True),  # server-c, reserved 3 h ago
    ("buildqueue-queue-growing-window", "example", 0, False),  # one sample: no growth
    ("buildqueue-queue-stalled", "example", 0, False),  # server-a's workers beat 15 s ago
    ("buildqueue-queue-stalled", "silent hour", 3600, True),
])  # fmt: skip
def test_alert_rules_on_the_example(
    conn: psycopg.Connection, uid: str, case: str, value: float, firing: bool
) -> None:
    rule = files.rules_by_uid()[uid]
    with changed(conn, case):
        evaluation = evaluate_rule(rule, conn)
    assert (evaluation.value, evaluation.firing) == (pytest.approx(value, rel=0.02), firing)


@pytest.fixture(scope="module")
def grafana() -> Iterator[GrafanaCode]:
    """@grafana/data in Debian's Chromium; Selenium Manager (a download) must never run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", lambda *_: pytest.fail("a download"))
        try:
            with grafana_code() as code:
                yield code
        except BrowserUnavailable as error:
            pytest.skip(f"headless Chromium is not installed here: {error}")


OVERVIEW = ["system_name", "health", "commit_timestamp", "progress", "completed_packages",
            "building_packages", "pending_packages", "cached_packages", "total_packages",
            "active_workers", "workers", "latest_heartbeat", "status", "cache_status",
            "git_commit_hash"]  # fmt: skip
STALE_FIELDS = {"system_name": "string", "workers": "string", "latest_heartbeat": "time",
                "seconds_since_heartbeat": "number", "building_packages": "number"}  # fmt: skip
LAG_FIELDS = {"systems_waiting_for_cache_push": "number", "packages_built_not_pushed": "number"}
DRAWN = [  # (panel, change, its fields, the columns compared, the rows Grafana draws)
    ("Systems overview", "example", OVERVIEW, ["system_name", "health", "progress"],
     [("server-a", "building", 0.7), ("server-b", "ready", 1), ("server-c", "stale", 0.9)]),
    ("Worker distribution", "example", {"system_name": "string", "active_workers": "number"}, None,
     [("server-c", 3), ("server-a", 2), ("server-b", 0)]),
    # server-b gets two workers and the newest commit: the tie is still broken by name
    ("Worker distribution", "tie", None, None, [("server-c", 3), ("server-a", 2), ("server-b", 2)]),
    ("Stale workers", "example", STALE_FIELDS, ["system_name", "workers", "building_packages"],
     [("server-c", "worker-2, worker-3, worker-4", 3)]),
    # server-a silent for 6 minutes: stale, but heard from after server-c, so it comes second
    ("Stale workers", "two stale", None, ["system_name"], [("server-c",), ("server-a",)]),
    # 2 + 0 + 5 packages built, not pushed; server-c, still building, waits for no push
    ("Cache push lag", "example", LAG_FIELDS, None, [(0, 7)]),
    ("Cache push lag", "server-b waits", None, None, [(1, 8)]),
    ("Worker distribution", "empty queue", None, None, []),
    ("Stale workers", "empty queue", None, None, []),
    ("Cache push lag", "empty queue", None, None, [(0, 0)]),  # zeros, not "No data"
]  # fmt: skip


@pytest.mark.parametrize(("title", "case", "fields", "columns", "rows"), DRAWN)
def test_panels_drawn_by_grafanas_code(
    grafana: GrafanaCode, conn: psycopg.Connection, title: str, case: str,
    fields: Any, columns: list[str] | None, rows: list[tuple],
) -> None:  # fmt: skip
    """Panel 1's rows through each panel's transformations, as the browser draws them."""
    with changed(conn, case):
        panel_1 = frame(conn, OVERVIEW_SQL)
    (drawn,) = grafana.apply(PANEL[title].get("transformations", []), [panel_1])
    if fields is not None:
        assert (list(drawn["fields"]) if isinstance(fields, list) else drawn["fields"]) == fields
    columns = columns or list(drawn["fields"])
    assert [tuple(row[c] for c in columns) for row in drawn["rows"]] == rows
    if (title, case) == ("Stale workers", "example"):  # 600 s old at load time
        assert LATEST_HEARTBEAT_AGE_SECONDS["server-c"] <= drawn["rows"][0][
            "seconds_since_heartbeat"] < 3600  # fmt: skip


def test_history_panel_returns_a_few_hundred_points_over_30_days(
    grafana: GrafanaCode, database: Database, scratch_schema: ScratchSchemas
) -> None:
    """Grafana's rangeUtil turns the range and maxDataPoints into $__interval."""
    schema, points, now = scratch_schema("history_panel"), {}, datetime.now(UTC)
    with database.connect(options=f"-c search_path={schema}") as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        conn.execute(  # three months of one-minute samples
            "create table build_queue_samples as select date_bin('1 minute', now(),"
            " timestamptz '2000-01-01') - g * interval '1 minute' as sampled_at,"
            " (g % 500)::bigint as packages_pending, 10::bigint as packages_building"
            " from generate_series(0, 129600) as g"
        )
        for span in (timedelta(hours=1), timedelta(days=1), timedelta(days=30)):
            interval = grafana.interval_seconds(now - span, now, HISTORY["maxDataPoints"])
            points[span] = len(run(conn, HISTORY["targets"][0]["rawSql"], now - span, interval))
    assert all(0 < count <= 400 for count in points.values()), points
