"""grafana/: the files parse, reference each other, and their SQL returns what the example implies.

No Grafana server runs here: support/grafana_checks.py checks the wiring, expands the PostgreSQL
data source's macros the way Grafana does and evaluates the alert rules' reduce/threshold
chains against the fixture view.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from buildqueue.database import Database
from buildqueue.dbt import DbtProject, project_vars
from buildqueue.sampler import SAMPLE_MODEL
from support import grafana_checks, grafana_files
from support.example import EXPECTED_ROWS
from support.grafana_files import TimeRange

EXAMPLE_RANGE = TimeRange(datetime(2024, 1, 1, tzinfo=UTC), datetime.now(UTC))
"""A dashboard time range holding every example commit (January 2024)."""

JAN_14 = datetime(2024, 1, 14, 9, 0, tzinfo=UTC)
JAN_15 = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def files() -> dict[str, dict[str, Any]]:
    return {
        "dashboard": grafana_files.load_dashboard(),
        "datasources": grafana_files.load_yaml(grafana_files.DATASOURCES_FILE),
        "providers": grafana_files.load_yaml(grafana_files.DASHBOARD_PROVIDERS_FILE),
        "alerting": grafana_files.load_yaml(grafana_files.ALERTING_FILE),
    }


def _problems(files: dict[str, dict[str, Any]]) -> list[str]:
    return grafana_checks.structure_problems(
        files["dashboard"], files["datasources"], files["providers"], files["alerting"]
    )


def _panel(files: dict, title: str) -> dict[str, Any]:
    (panel,) = [p for p in grafana_files.panels(files["dashboard"]) if p["title"] == title]
    return panel


def _rule(files: dict, uid: str) -> dict[str, Any]:
    (rule,) = [r for _, r in grafana_files.alert_rules(files["alerting"]) if r["uid"] == uid]
    return rule


def _node(rule: dict, ref_id: str) -> dict[str, Any]:
    (node,) = [item for item in rule["data"] if item["refId"] == ref_id]
    return node


# --- structure ---------------------------------------------------------------------


def test_files_are_wired_together(files: dict) -> None:
    assert _problems(files) == []


def _own_view_query(files: dict, index: int) -> dict[str, Any]:
    """Panel ``index`` with its own copy of the source panel's query, as before issue 11."""
    panel = copy.deepcopy(files["dashboard"]["panels"][index])
    source = files["dashboard"]["panels"][0]
    panel["datasource"] = source["datasource"]
    panel["targets"] = copy.deepcopy(source["targets"])
    return panel


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda f: f["dashboard"]["panels"][0].pop("targets"), "no query"),
        (lambda f: f["dashboard"]["panels"][1].update(datasource={"uid": "x"}), "not provisioned"),
        (lambda f: f["dashboard"]["panels"][2]["targets"][0].update(rawSql=" "), "no rawSql"),
        (lambda f: f["dashboard"]["panels"][3].update(id=1), "panel ids"),
        (lambda f: f["dashboard"]["panels"][1]["targets"][0].update(panelId=99), "unknown panel"),
        (lambda f: f["dashboard"]["panels"][3]["targets"][0].update(panelId=2), "no query of its"),
        (lambda f: f["dashboard"]["panels"][4]["targets"][0].pop("withTransforms"), "withTrans"),
        (lambda f: f["dashboard"]["panels"][4]["targets"].append({"refId": "B"}), "exactly one"),
        (
            lambda f: f["dashboard"]["panels"].__setitem__(1, _own_view_query(f, 1)),
            "2 panels query view_build_queue_status",
        ),
        (lambda f: f["alerting"]["groups"][0]["rules"][0].update(condition="Z"), "condition"),
        (
            lambda f: f["alerting"]["groups"][0]["rules"][1]["data"][1]["model"].update(
                expression="Q"
            ),
            "reads",
        ),
        (
            lambda f: f["alerting"]["groups"][0]["rules"][2].update(uid="buildqueue-status"),
            "more than once",
        ),
        (
            lambda f: f["alerting"]["groups"][0]["rules"][0]["data"][0]["model"].update(
                format="table"
            ),
            "time_series",
        ),
        (lambda f: f["alerting"]["groups"][0]["rules"][0].update(panelId=99), "unknown panel"),
        (lambda f: f["alerting"]["groups"][0].update(folder="Elsewhere"), "folder"),
    ],
)
def test_the_structure_check_catches_breakage(files: dict, breakage: Any, expected: str) -> None:
    broken = copy.deepcopy(files)
    breakage(broken)
    problems = _problems(broken)
    assert any(expected in problem for problem in problems), problems


def test_an_exception_to_the_one_query_rule_goes_with_its_query(
    files: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(grafana_files.VIEW_QUERY_EXCEPTIONS, 4, "Stale workers (it reuses panel 1)")
    assert any(
        problem.startswith("panel 4 is excused")
        and "remove it from VIEW_QUERY_EXCEPTIONS" in problem
        for problem in _problems(files)
    )


def test_datasource_connects_from_the_environment(files: dict) -> None:
    (source,) = files["datasources"]["datasources"]
    assert source["uid"] == "buildqueue-postgres"
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["editable"] is False
    env_only = re.compile(r"^(\$\{[A-Z_]+\}:?)+$")
    for value in (
        source["url"],
        source["user"],
        source["secureJsonData"]["password"],
        source["jsonData"]["database"],
        source["jsonData"]["sslmode"],
    ):
        assert env_only.match(str(value)), f"{value!r} is not taken from the environment"


def test_dashboard_provider_loads_the_dashboard_folder(files: dict) -> None:
    (provider,) = files["providers"]["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].endswith("/buildqueue")
    assert provider["disableDeletion"] is True
    assert sorted(p.name for p in grafana_files.DASHBOARD_FILE.parent.glob("*.json")) == [
        "build-queue.json"
    ]


def test_dashboard_is_current_grafana(files: dict) -> None:
    dashboard = files["dashboard"]
    assert dashboard["uid"] == "buildqueue-status"
    assert dashboard["schemaVersion"] >= 39  # Grafana 11 and later
    assert dashboard.get("id") is None  # provisioned dashboards get their id from Grafana


def test_dashboard_has_the_five_panels_of_the_spec(files: dict) -> None:
    kinds = [(p["title"], p["type"]) for p in grafana_files.panels(files["dashboard"])]
    assert kinds == [
        ("Systems overview", "table"),
        ("Worker distribution", "barchart"),
        ("Queue depth over time", "timeseries"),
        ("Stale workers", "table"),
        ("Cache push lag", "gauge"),
    ]


def test_one_view_query_per_refresh(files: dict) -> None:
    """Panel 1 queries the view; panels 2, 4 and 5 reuse its rows (Dashboard data source)."""
    dashboard = files["dashboard"]
    queries = [
        (panel["id"], target["refId"]) for panel, target in grafana_files.view_queries(dashboard)
    ]
    excused = sorted(grafana_files.VIEW_QUERY_EXCEPTIONS)
    assert queries == sorted([(1, "A")] + [(panel_id, "A") for panel_id in excused])
    assert excused == []  # 3, Queue depth over time, reads the queue history instead
    reusing = {
        panel["id"]: grafana_files.source_panel(dashboard, panel)["id"]
        for panel in grafana_files.panels(dashboard)
        if grafana_files.is_dashboard_datasource(panel["datasource"])
    }
    assert reusing == {2: 1, 4: 1, 5: 1}
    for panel in grafana_files.panels(dashboard):
        if panel["id"] in reusing:
            (target,) = panel["targets"]
            assert target["withTransforms"] is False  # the query's rows, not panel 1's table
            assert "rawSql" not in target
    sql = [panel["id"] for panel, _ in grafana_files.sql_targets(dashboard)]
    assert sql == [1, 3]  # what one refresh sends the database: the view, the history
    (history,) = _panel(files, "Queue depth over time")["targets"]
    assert "from build_queue_samples" in history["rawSql"]


def test_overview_has_progress_bars_status_colours_and_newest_first(files: dict) -> None:
    panel = _panel(files, "Systems overview")
    assert panel["options"]["sortBy"] == [{"displayName": "commit_timestamp", "desc": True}]
    overrides = {
        o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]
    }
    progress = {p["id"]: p["value"] for p in overrides["progress"]}
    assert progress["custom.cellOptions"]["type"] == "gauge"
    assert (progress["min"], progress["max"], progress["unit"]) == (0, 1, "percentunit")
    health = {p["id"]: p["value"] for p in overrides["health"]}
    assert health["custom.cellOptions"] == {
        "type": "color-background",
        "mode": "basic",
        "applyToRow": True,
    }
    colours = {k: v["color"] for k, v in health["mappings"][0]["options"].items()}
    assert (colours["ready"], colours["building"], colours["stale"]) == ("green", "yellow", "red")


def test_alert_thresholds_and_durations_are_the_specs(files: dict) -> None:
    """The spec's numbers; that each rule holds its var's default is pytests/test_one_home.py."""
    defaults = project_vars()
    assert defaults["packages_remaining_threshold"] == 500
    assert defaults["stuck_building_threshold"] == "2 hours"
    assert defaults["stale_heartbeat_threshold"] == "5 minutes"
    rules = {rule["uid"]: rule for _, rule in grafana_files.alert_rules(files["alerting"])}
    assert {uid: rule["for"] for uid, rule in rules.items()} == {
        "buildqueue-stale-workers": "10m",
        "buildqueue-queue-growing": "0s",
        "buildqueue-stuck-building": "0s",
        "buildqueue-queue-growing-window": "0s",
        "buildqueue-queue-stalled": "0s",
    }
    for uid, rule in rules.items():
        evaluator = _node(rule, rule["condition"])["model"]["conditions"][0]["evaluator"]
        assert evaluator["type"] == "gt", uid


def test_alert_file_has_no_dollar_grafana_would_interpolate(files: dict) -> None:
    """Grafana expands $VARS from its environment in alert files, except in annotations."""
    for _, rule in grafana_files.alert_rules(files["alerting"]):
        without_annotations = {k: v for k, v in rule.items() if k != "annotations"}
        assert "$" not in yaml.safe_dump(without_annotations), rule["uid"]


# --- macro expansion ---------------------------------------------------------------


def test_macros_expand_like_grafana() -> None:
    span = TimeRange(
        datetime(2024, 1, 14, 9, 0, tzinfo=UTC), datetime(2024, 1, 15, 10, 30, 0, 5000, tzinfo=UTC)
    )
    sql = (
        "select $__time(c), $__timeEpoch(c), $__timeGroupAlias(c, '5m') from t "
        "where $__timeFilter(c) and $__timeFrom() < $__timeTo() and $__unixEpochFilter(e)"
    )
    assert grafana_files.expand_macros(sql, span) == (
        'select c AS "time", extract(epoch from c) as "time", '
        'floor(extract(epoch from c)/300)*300 AS "time" from t '
        "where c BETWEEN '2024-01-14T09:00:00Z' AND '2024-01-15T10:30:00.005Z' "
        "and '2024-01-14T09:00:00Z' < '2024-01-15T10:30:00.005Z' "
        "and e >= 1705222800 AND e <= 1705314600"
    )
    assert (
        grafana_files.expand_macros(
            "select $__timeGroup(c, 1h), $__unixEpochFrom(), $__unixEpochTo()", span
        )
        == "select floor(extract(epoch from c)/3600)*3600, 1705222800, 1705314600"
    )
    with pytest.raises(grafana_files.GrafanaError, match="needs a column and an interval"):
        grafana_files.expand_macros("select $__timeGroup(c)", span)
    with pytest.raises(grafana_files.GrafanaError, match="unknown macro"):
        grafana_files.expand_macros("select $__nope(x)", span)
    with pytest.raises(grafana_files.GrafanaError, match="unexpanded"):
        grafana_files.expand_macros("select $__interval", span)


# --- the panels' and alerts' SQL on the example --------------------------------------


def _rows(conn: psycopg.Connection, panel: dict, time_range: TimeRange = EXAMPLE_RANGE) -> list:
    (target,) = panel["targets"]
    columns, rows = grafana_checks.run_query(conn, target["rawSql"], time_range)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_every_query_runs_on_the_example(files: dict, conn: psycopg.Connection) -> None:
    for panel, target in grafana_files.sql_targets(files["dashboard"]):
        grafana_checks.run_query(conn, target["rawSql"], EXAMPLE_RANGE)  # raises on bad SQL
        assert panel["title"]
    for _, rule in grafana_files.alert_rules(files["alerting"]):
        for query in grafana_files.rule_queries(rule):
            columns, rows = grafana_checks.run_query(conn, query["model"]["rawSql"], EXAMPLE_RANGE)
            assert columns[0] == "time" and len(rows) == 1, rule["uid"]


def test_systems_overview_panel(files: dict, conn: psycopg.Connection) -> None:
    rows = _rows(conn, _panel(files, "Systems overview"))
    assert [(r["system_name"], r["health"]) for r in rows] == [
        ("server-a", "building"),
        ("server-b", "ready"),
        ("server-c", "stale"),
    ]
    assert [r["commit_timestamp"] for r in rows] == [e["commit_timestamp"] for e in EXPECTED_ROWS]
    assert [r["progress"] for r in rows] == [Decimal("0.7"), 1, Decimal("0.9")]
    assert [r["workers"] for r in rows] == [
        "worker-0, worker-1",
        "",
        "worker-2, worker-3, worker-4",
    ]


def test_queue_depth_panel(
    files: dict, database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    """The queue history: two planted January 2024 samples, then the one the build took."""
    panel = _panel(files, "Queue depth over time")
    assert panel["targets"][0]["format"] == "time_series"
    table = sql.Identifier(samples_schema, SAMPLE_MODEL)
    with database.connect(options=f"-c search_path={samples_schema}") as conn:
        for moment, pending, building in [(JAN_14, 9, 4), (JAN_15, 6, 5)]:
            conn.execute(
                sql.SQL("insert into {} values (%s, %s, 3, 2, 1, 1, %s, %s, 0, 0, 5)").format(
                    table
                ),
                [moment, moment, pending, building],
            )
        (taken_at,) = conn.execute(
            sql.SQL("select max(sampled_at) from {}").format(table)
        ).fetchone()
        until_now = TimeRange(EXAMPLE_RANGE.start, datetime.now(UTC))
        points = [
            (r["time"], r["pending_packages"], r["work_remaining"])
            for r in _rows(conn, panel, until_now)
        ]
        # one point per 1-minute $__interval (epoch seconds, as $__timeGroupAlias gives),
        # oldest first; the build's sample holds the example's 1 + 0 + 2 pending and
        # 2 + 0 + 3 building packages
        epoch = [moment.timestamp() for moment in (JAN_14, JAN_15, taken_at)]
        assert points == [(epoch[0], 9, 13), (epoch[1], 6, 11), (epoch[2], 3, 8)]
        # $__timeFilter really filters: from 2024-01-15 on, the 01-14 sample drops out
        later = TimeRange(datetime(2024, 1, 15, tzinfo=UTC), until_now.end)
        assert [r["time"] for r in _rows(conn, panel, later)] == epoch[1:]


@pytest.mark.parametrize(
    ("uid", "value", "firing"),
    [
        ("buildqueue-stale-workers", 1, True),  # server-c
        ("buildqueue-queue-growing", 8, False),  # 3 + 0 + 5 packages, threshold 500
        ("buildqueue-stuck-building", 1, True),  # server-c, reserved 3 h ago
    ],
)
def test_alerts_on_the_example(
    files: dict, conn: psycopg.Connection, uid: str, value: int, firing: bool
) -> None:
    evaluation = grafana_checks.evaluate_rule(_rule(files, uid), conn)
    assert (evaluation.value, evaluation.firing) == (value, firing)


def test_queue_alert_fires_above_its_threshold(files: dict, conn: psycopg.Connection) -> None:
    rule = copy.deepcopy(_rule(files, "buildqueue-queue-growing"))
    _node(rule, "C")["model"]["conditions"][0]["evaluator"]["params"] = [7]
    assert grafana_checks.evaluate_rule(rule, conn).firing
