"""Every question asked of the view, as SQL: the query-shape corpus of `./run bench`.

The spec's example and alert queries (analyses/, compiled by dbt), the dashboard's panel
queries and the alert rules' queries (grafana/, Grafana's macros expanded for the
dashboard's time range), the queries of Crystal Forge's own test suite, a filter on each
column, ``count(*)`` and ``order by ... limit 10``. Unqualified names are resolved through
the connection's ``search_path`` (the view's schema), as Grafana's data source does.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import yaml

from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR, compiled_analyses

GRAFANA = PROJECT_DIR / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "build-queue.json"
ALERTING = GRAFANA / "provisioning" / "alerting" / "buildqueue-alerts.yaml"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "buildqueue.yaml"
NICE_INTERVALS = (1, 5, 10, 15, 20, 30, 60, 300, 600, 900, 1800, 3600, 10800, 21600, 43200)
"""Seconds Grafana rounds ``$__interval`` to (rangeutil's roundInterval), up to 12 h."""

V = "view_build_queue_status"
UPSTREAM = {
    # packages/cf-test-suite/cf_test/tests/database/test_view_build_queue_status.py
    "upstream: count": f"select count(*) from {V}",
    "upstream: package math": "select nixos_id, total_packages, completed_packages,"
    f" building_packages, pending_packages from {V}",
    "upstream: distinct status": f"select distinct status from {V}",
    "upstream: ready": "select nixos_id, system_name, status, total_packages,"
    f" completed_packages from {V} where status = 'ready_for_system_build'",
    "upstream: building": f"select nixos_id, system_name, status, active_workers from {V}"
    " where status = 'building'",
    "upstream: workers": f"select nixos_id, system_name, active_workers, worker_ids from {V}"
    " where active_workers > 0",
    "upstream: heartbeats": "select system_name, latest_heartbeat, active_workers,"
    f" extract(epoch from (now() - latest_heartbeat)) as seconds_ago from {V}"
    " where active_workers > 0 and latest_heartbeat is not null",
    "upstream: ordering": f"select commit_timestamp from {V} order by commit_timestamp desc"
    " limit 100",
}


def grafana_interval(span: timedelta, max_points: int) -> int:
    """``$__interval`` in seconds for a range and a panel's maxDataPoints, rounded up."""
    raw = span.total_seconds() / max_points
    return next((s for s in NICE_INTERVALS if s >= raw), NICE_INTERVALS[-1])


def expand(sql: str, span: timedelta, interval: int) -> str:
    """Grafana's macros as its PostgreSQL data source expands them (macros.go), the few used:
    ``$__timeFilter``, ``$__time``, ``$__timeGroupAlias(col, $__interval)``."""
    end = datetime.now(UTC)
    start, stop = ((end - span).isoformat(), end.isoformat())
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{start}' AND '{stop}'", sql)
    sql = re.sub(
        r"\$__timeGroupAlias\((\w+), *\$__interval\)",
        rf'floor(extract(epoch from \1)/{interval})*{interval} AS "time"',
        sql,
    )
    sql = re.sub(r"\$__time\((\w+)\)", r'\1 AS "time"', sql)
    if "$" in sql:
        raise ValueError(f"a Grafana macro this tool does not expand is left in: {sql!r}")
    return sql


def pool_size() -> int:
    """maxOpenConns of the provisioned data source: the connections Grafana opens."""
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return int(source["jsonData"]["maxOpenConns"])


def grafana_queries() -> dict[str, str]:
    """The dashboard's panel queries and the alert rules' queries, macros expanded.

    Panels on Grafana's Dashboard data source send nothing (they reuse another's rows)."""
    dashboard = json.loads(DASHBOARD.read_text())
    span = timedelta(days=int(dashboard["time"]["from"].removeprefix("now-").rstrip("d")))
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "rawSql" in target:
                interval = grafana_interval(span, panel.get("maxDataPoints", 1000))
                queries[f"panel: {panel['title']}"] = expand(target["rawSql"], span, interval)
    for group in yaml.safe_load(ALERTING.read_text())["groups"]:
        for rule in group["rules"]:
            for item in rule["data"]:
                if "rawSql" in item["model"]:
                    queries[f"rule: {rule['title']}"] = expand(item["model"]["rawSql"], span, 1)
    return queries


def analysis_names() -> list[str]:
    """Every analysis in analyses/, sorted by name."""
    return sorted(path.stem for path in (PROJECT_DIR / "analyses").glob("*.sql"))


def compile_analyses(project: DbtProject, *names: str, vars: dict | None = None) -> dict[str, str]:
    """`dbt compile` of the analyses ``names`` (default: all); each one's SQL by name."""
    names = names or tuple(analysis_names())
    project.invoke("compile", "--select", *names, vars=vars)
    paths = {name: compiled_analyses() / f"{name}.sql" for name in names}
    if missing := [str(path) for path in paths.values() if not path.exists()]:
        raise FileNotFoundError(f"dbt compile did not write {missing}")
    return {name: path.read_text() for name, path in paths.items()}


def analyses(project: DbtProject) -> dict[str, str]:
    """The spec's example and alert queries (analyses/*.sql) as dbt compiles them."""
    return {f"spec: {name}": sql for name, sql in compile_analyses(project).items()}


def column_filters(conn: psycopg.Connection) -> dict[str, str]:
    """A filter on each column a dashboard or a person filters on, ``count(*)``, top 10."""
    row: Any = conn.execute(f"select nixos_id, system_name from {V} limit 1").fetchone()
    nixos_id, system_name = row or (0, "")
    quoted = system_name.replace("'", "''")
    shapes = {
        "status = 'pending'": "status = 'pending'",
        "has_stale_workers": "has_stale_workers",
        "active_workers > 0": "active_workers > 0",
        "latest_heartbeat > now() - 1 hour": "latest_heartbeat > now() - interval '1 hour'",
        "latest_heartbeat < now() - 5 minutes": "latest_heartbeat < now() - interval '5 minutes'",
        "system_name =": f"system_name = '{quoted}'",
        "nixos_id =": f"nixos_id = {int(nixos_id)}",
        "commit_timestamp > now() - 1 day": "commit_timestamp > now() - interval '1 day'",
        "commit_timestamp < now() - 1 day": "commit_timestamp < now() - interval '1 day'",
    }
    return {
        "count(*)": f"select count(*) from {V}",
        "order by pending_packages desc limit 10": f"select * from {V}"
        " order by pending_packages desc limit 10",
        **{f"where {name}": f"select * from {V} where {cond}" for name, cond in shapes.items()},
    }


def corpus(project: DbtProject, conn: psycopg.Connection) -> dict[str, str]:
    """Every shape by name, ``select *`` first (the reference of every ratio)."""
    return {
        "select *": f"select * from {V}",
        **column_filters(conn),
        **UPSTREAM,
        **grafana_queries(),
        **analyses(project),
    }
