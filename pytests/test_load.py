"""`buildqueue load` at toy scale: what it sends, how it skips, the search, the report.

Timing is never asserted here (numbers come from `./run load`, see docs/performance.md):
only that the queries sent per refresh are exactly the dashboard's, that alert rules run,
that unanswerable targets are skipped and named, and that the capacity search and the
table behave.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtError, DbtOutcome, DbtProject
from buildqueue.perf import grafana_files
from buildqueue.perf.capacity import (
    DASHBOARD_DATASOURCE_UID,
    AlertRule,
    LoadError,
    RunStats,
    Workload,
    check_relations,
    connect_to_view,
    dashboard_queries,
    find_capacity,
    format_table,
    measure_fleet,
    read_workload,
    run_workload,
)
from buildqueue.perf.fleet import FleetShape
from buildqueue.perf.load import percentile
from support.scratch import drop_schemas, scratch_name

SOURCE_SCHEMA = scratch_name("load")
VIEW_SCHEMA = scratch_name("load_view")
SHAPE = FleetShape(systems=20, packages=10)


def _sql_targets(dashboard: dict[str, Any]) -> dict[str, str]:
    """Independently of the loader: panel targets that Grafana sends to PostgreSQL."""
    sent = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel.get("datasource") or {}
            if source.get("uid") != DASHBOARD_DATASOURCE_UID and target.get("rawSql"):
                sent[f"panel {panel['id']} {target['refId']}"] = target["rawSql"]
    return sent


@pytest.fixture(scope="module")
def fleet(database: Database, build: DbtOutcome) -> Iterator[Any]:
    """A tiny fleet, its view, and one short capacity search at R = 0.5 s (dropped after)."""
    project = DbtProject(database, target="ci", schema=VIEW_SCHEMA)
    try:
        yield measure_fleet(
            project,
            SHAPE,
            (0.5,),
            step_seconds=1.0,
            limit=5.0,
            max_viewers=2,
            source_schema=SOURCE_SCHEMA,
            log=lambda line: None,
        )
    finally:
        with database.connect() as conn:
            for schema in (VIEW_SCHEMA, SOURCE_SCHEMA):
                conn.execute(f"drop schema if exists {schema} cascade")


def test_each_refresh_sends_exactly_the_dashboards_queries(fleet: Any) -> None:
    expected = _sql_targets(grafana_files.load_dashboard())
    assert {q.key: q.raw_sql for q in fleet.workload.refresh_queries} == expected
    for step in fleet.capacities[0].steps:
        viewer_keys = {key: n for key, n in step.sent.items() if key.startswith("panel ")}
        assert viewer_keys.keys() == expected.keys()
        # every refresh sends every query once: the counts are equal
        assert len(set(viewer_keys.values())) == 1, viewer_keys
        for template in fleet.workload.refresh_queries:
            now, text = step.last_sent[template.key]
            assert text == template.render(now)


def test_alert_rules_run_alongside(database: Database, fleet: Any) -> None:
    alerting = grafana_files.load_yaml(grafana_files.ALERTING_FILE)
    uids = {str(rule["uid"]) for _, rule in grafana_files.alert_rules(alerting)}
    assert {rule.uid for rule in fleet.workload.alert_rules} == uids
    # rules are spread over their 60 s interval (the first at 10 s): none in a 1 s step
    for step in fleet.capacities[0].steps:
        assert not [key for key in step.sent if key.startswith("alert ")]
    # each rule runs its queries once per interval (shortened here to 2 s)
    fast = [AlertRule(rule.uid, 2.0, rule.queries) for rule in fleet.workload.alert_rules]
    stats = run_workload(database, VIEW_SCHEMA, Workload([], fast), 0, 1.0, 2.0, grace=1.0)
    assert stats.sent == {query.key: 1 for rule in fast for query in rule.queries}
    assert stats.errors == [] and len(stats.alert_latencies) == len(stats.sent)


def test_report_structure(fleet: Any) -> None:
    capacity = fleet.capacities[0]
    assert [step.viewers for step in capacity.steps] == [1, 2]
    assert all(step.errors == [] and step.latencies for step in capacity.steps)
    assert (capacity.viewers, capacity.label()) == (2, ">= 2")
    assert fleet.dependency_rows > 0 and fleet.view_median > 0
    table = format_table([fleet], 5.0)
    assert "| 20x10 |" in table and "viewers at R = 0.5 s" in table and ">= 2" in table
    assert "p99" in capacity.steps[0].describe()


def test_dashboard_panels_send_nothing_and_missing_tables_are_skipped(
    database: Database, fleet: Any
) -> None:
    dashboard = copy.deepcopy(grafana_files.load_dashboard())
    reuse, missing = dashboard["panels"][1], dashboard["panels"][2]
    reuse["datasource"] = {"type": "datasource", "uid": DASHBOARD_DATASOURCE_UID}
    reuse["targets"] = [{"refId": "A", "panelId": 1, "datasource": reuse["datasource"]}]
    missing["targets"][0]["rawSql"] = "select * from no_such_samples"
    refresh, not_sent = dashboard_queries(dashboard)
    assert f"panel {reuse['id']} A" not in {q.key for q in refresh}
    assert any("Dashboard data source" in line for line in not_sent)
    workload = Workload(refresh, [], not_sent)
    with connect_to_view(database, VIEW_SCHEMA) as conn:
        checked = check_relations(conn, workload)
        tables = conn.execute(
            "select count(*) from pg_class where relname = 'no_such_samples'"
        ).fetchone()
    assert f"panel {missing['id']} A" not in {q.key for q in checked.refresh_queries}
    assert any(
        line.startswith(f"panel {missing['id']} A") and "no_such_samples" in line
        for line in checked.skipped
    ), checked.skipped
    assert "no_such_samples" in checked.describe()
    assert tables == (0,)  # nothing was created for it
    assert len(checked.refresh_queries) == len(refresh) - 1


def test_a_broken_query_is_an_error_not_a_skip(database: Database, fleet: Any) -> None:
    broken = read_workload()
    template = broken.refresh_queries[0]
    broken.refresh_queries[0] = type(template)(
        template.key, "select no_such_column from view_build_queue_status", template.span
    )
    with (
        connect_to_view(database, VIEW_SCHEMA) as conn,
        pytest.raises(LoadError, match="no_such_column"),
    ):
        check_relations(conn, broken)


def _fake(limit: int, seen: list[int]) -> Any:
    def run(viewers: int) -> RunStats:
        seen.append(viewers)
        stats = RunStats(viewers, 1.0, seconds=1.0)
        stats.latencies = [0.1 if viewers <= limit else 2.0]
        return stats

    return run


def test_search_doubles_then_bisects() -> None:
    seen: list[int] = []
    capacity = find_capacity(_fake(11, seen), 1.0, log=lambda line: None)
    assert (capacity.viewers, capacity.capped) == (11, False)
    assert seen == [1, 2, 4, 8, 16, 12, 10, 11]
    assert find_capacity(_fake(0, []), 1.0, log=lambda line: None).viewers == 0
    capped = find_capacity(_fake(100, []), 1.0, max_viewers=20, log=lambda line: None)
    assert capped.label() == ">= 20"


def test_loader_refuses_production(database: Database, build: DbtOutcome) -> None:
    guarded = [scratch_name("load_guard"), scratch_name("cf_load_guard")]
    prod = DbtProject(database, target="prod", schema=guarded[0])
    try:
        with pytest.raises(DbtError, match="Refusing to write Crystal Forge tables"):
            measure_fleet(
                prod,
                FleetShape(2, 2),
                (1.0,),
                step_seconds=0.1,
                limit=1.0,
                max_viewers=1,
                source_schema=guarded[1],
                log=lambda line: None,
            )
    finally:
        drop_schemas(database, guarded)


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5, abs=0.1)
    assert percentile(values, 0.99) == pytest.approx(99.0, abs=0.1)
    assert percentile([7.0], 0.99) == 7.0
