"""Checks of the Grafana files that stand in for a Grafana server in the tests.

`structure_problems` checks that the provisioning files reference each other (uids, refIds,
the data source, the panels that reuse the source panel's rows); `run_query` and
`evaluate_rule` run a panel's or an alert rule's SQL, with Grafana's macros expanded, and
evaluate a rule's reduce/threshold chain on the result. Reading the files and expanding the
macros lives in `support.grafana_files` (pytests/support/grafana_files.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from support.grafana_files import (
    DASHBOARD_DATASOURCE_UID,
    EXPRESSION_UID,
    VIEW_NAME,
    VIEW_QUERY_EXCEPTIONS,
    GrafanaError,
    TimeRange,
    alert_rules,
    datasource_uid,
    datasource_uids,
    expand_macros,
    is_dashboard_datasource,
    panels,
    source_panel,
    view_queries,
)

# --- structure -----------------------------------------------------------------------


def structure_problems(
    dashboard: dict[str, Any],
    datasources: dict[str, Any],
    providers: dict[str, Any],
    alerting: dict[str, Any],
) -> list[str]:
    """Everything that would make Grafana reject or mis-wire these files; [] when sound."""
    problems: list[str] = []
    known = datasource_uids(datasources)
    if not known:
        problems.append("data sources: no data source with a uid")
    problems += _dashboard_problems(dashboard, known)
    problems += _provider_problems(providers, alerting)
    problems += _alerting_problems(alerting, known, dashboard)
    uids = [dashboard.get("uid")] + [rule.get("uid") for _, rule in alert_rules(alerting)]
    uids += [ds.get("uid") for ds in datasources.get("datasources", [])]
    duplicates = sorted({str(uid) for uid in uids if uids.count(uid) > 1})
    if duplicates:
        problems.append(f"uids used more than once: {duplicates}")
    return problems


def _dashboard_problems(dashboard: dict[str, Any], known: set[str]) -> list[str]:
    """The dashboard's identity, its panel ids, each panel, and the one-view-query rule."""
    problems = []
    if not dashboard.get("uid"):
        problems.append("dashboard: no uid")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("dashboard: no integer schemaVersion")
    ids = [panel.get("id") for panel in panels(dashboard)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"dashboard: panel ids missing or repeated: {ids}")
    for panel in panels(dashboard):
        if panel.get("type") != "row":
            problems += _panel_problems(dashboard, panel, known)
    return problems + _view_query_problems(dashboard)


def _panel_problems(dashboard: dict[str, Any], panel: dict[str, Any], known: set[str]) -> list[str]:
    """A panel: queries with distinct refIds, on a provisioned data source or another panel."""
    problems = []
    name = f"panel {panel.get('id')} ({panel.get('title')!r})"
    targets = panel.get("targets") or []
    if not targets:
        problems.append(f"{name}: no query")
    ref_ids = [target.get("refId") for target in targets]
    if len(ref_ids) != len(set(ref_ids)) or None in ref_ids:
        problems.append(f"{name}: query refIds missing or repeated: {ref_ids}")
    if is_dashboard_datasource(panel.get("datasource")):
        return problems + _reuse_problems(dashboard, panel, name)
    if datasource_uid(panel.get("datasource")) not in known:
        problems.append(f"{name}: data source {panel.get('datasource')} is not provisioned")
    for target in targets:
        problems += _target_problems(panel, target, name, known)
    return problems


def _target_problems(
    panel: dict[str, Any], target: dict[str, Any], name: str, known: set[str]
) -> list[str]:
    """A panel's SQL query: a known data source, some rawSql, a table/time_series format."""
    problems = []
    uid = datasource_uid(target.get("datasource") or panel.get("datasource"))
    if uid not in known:
        problems.append(f"{name}: query {target.get('refId')} uses unknown data source")
    if not str(target.get("rawSql", "")).strip():
        problems.append(f"{name}: query {target.get('refId')} has no rawSql")
    if target.get("format") not in {"table", "time_series"}:
        problems.append(f"{name}: query {target.get('refId')} has no table/time_series format")
    return problems


def _reuse_problems(dashboard: dict[str, Any], panel: dict[str, Any], name: str) -> list[str]:
    """A Dashboard-data-source panel: one target naming a panel that queries the database."""
    targets = panel.get("targets") or []
    if len(targets) != 1:
        return [f"{name}: the Dashboard data source takes exactly one query, not {len(targets)}"]
    (target,) = targets
    problems = []
    if not is_dashboard_datasource(target.get("datasource") or panel.get("datasource")):
        problems.append(f"{name}: its query is not on the Dashboard data source")
    if not isinstance(target.get("withTransforms"), bool):
        problems.append(f"{name}: withTransforms must be true or false")
    try:
        source = source_panel(dashboard, panel)
    except GrafanaError as error:
        return [*problems, f"{name}: {error}"]
    if source is panel or is_dashboard_datasource(source.get("datasource")):
        problems.append(
            f"{name}: reads panel {source.get('id')}, which sends no query of its own; "
            "point panelId at the panel that queries the view"
        )
    return problems


def _view_query_problems(dashboard: dict[str, Any]) -> list[str]:
    """At most one panel queries the view per refresh; the others reuse its rows."""
    problems = []
    readers = [panel for panel, _ in view_queries(dashboard)]
    for panel_id in VIEW_QUERY_EXCEPTIONS:
        if panel_id not in {panel.get("id") for panel in readers}:
            problems.append(
                f"panel {panel_id} is excused from the one-view-query rule but does not query "
                f"{VIEW_NAME}: remove it from VIEW_QUERY_EXCEPTIONS in "
                "pytests/support/grafana_files.py"
            )
    counted = [panel for panel in readers if panel.get("id") not in VIEW_QUERY_EXCEPTIONS]
    if len(counted) > 1:
        names = ", ".join(f"{p.get('id')} ({p.get('title')!r})" for p in counted)
        problems.append(
            f"{len(counted)} panels query {VIEW_NAME} on every refresh: {names}. Only one "
            "may: give the others the Dashboard data source on that panel "
            f'({{"uid": "{DASHBOARD_DATASOURCE_UID}"}}, panelId) and transformations'
        )
    return problems


def _provider_problems(providers: dict[str, Any], alerting: dict[str, Any]) -> list[str]:
    problems = []
    entries = providers.get("providers") or []
    if not entries:
        return ["dashboard providers: none"]
    folders = {entry.get("folder") for entry in entries}
    for entry in entries:
        if entry.get("type") != "file" or not (entry.get("options") or {}).get("path"):
            problems.append(
                f"dashboard provider {entry.get('name')}: not a file provider with a path"
            )
    for group in alerting.get("groups", []):
        if group.get("folder") not in folders:
            problems.append(
                f"alert group {group.get('name')}: folder {group.get('folder')!r} is not the "
                f"dashboards' folder {sorted(map(str, folders))}"
            )
    return problems


def _alerting_problems(
    alerting: dict[str, Any], known: set[str], dashboard: dict[str, Any]
) -> list[str]:
    """The alerting file's apiVersion and each of its rules."""
    problems = []
    if alerting.get("apiVersion") != 1:
        problems.append("alerting: apiVersion is not 1")
    panel_ids = {panel.get("id") for panel in panels(dashboard)}
    for group, rule in alert_rules(alerting):
        problems += _rule_problems(group, rule, known, dashboard, panel_ids)
    return problems


def _rule_problems(
    group: dict[str, Any],
    rule: dict[str, Any],
    known: set[str],
    dashboard: dict[str, Any],
    panel_ids: set[Any],
) -> list[str]:
    """A rule: its required keys and group settings, refIds its condition and expressions
    can resolve, sound data items, and links to this dashboard and its panels."""
    problems = []
    name = f"alert {rule.get('uid')} ({rule.get('title')!r})"
    for key in ("uid", "title", "condition", "data", "for"):
        if key not in rule:
            problems.append(f"{name}: no {key}")
    if not group.get("interval") or not group.get("folder") or not group.get("name"):
        problems.append(f"alert group {group.get('name')}: needs name, folder and interval")
    data = rule.get("data") or []
    ref_ids = [item.get("refId") for item in data]
    if len(ref_ids) != len(set(ref_ids)):
        problems.append(f"{name}: repeated refIds {ref_ids}")
    if rule.get("condition") not in ref_ids:
        problems.append(f"{name}: condition {rule.get('condition')!r} is none of {ref_ids}")
    for item in data:
        problems += _rule_item_problems(item, name, ref_ids, known)
    if rule.get("dashboardUid") and rule.get("dashboardUid") != dashboard.get("uid"):
        problems.append(f"{name}: links to unknown dashboard {rule.get('dashboardUid')}")
    if rule.get("panelId") is not None and rule.get("panelId") not in panel_ids:
        problems.append(f"{name}: links to unknown panel {rule.get('panelId')}")
    return problems


def _rule_item_problems(
    item: dict[str, Any], name: str, ref_ids: list[Any], known: set[str]
) -> list[str]:
    """One ``data`` item of a rule: its model's refId agrees, and it is a sound expression
    (reading another refId of the rule) or a sound query (see `_rule_query_problems`)."""
    problems = []
    model = item.get("model") or {}
    if model.get("refId", item.get("refId")) != item.get("refId"):
        problems.append(f"{name}: {item.get('refId')}'s model has refId {model.get('refId')}")
    if item.get("datasourceUid") != EXPRESSION_UID:
        return problems + _rule_query_problems(item, model, name, known)
    source = model.get("expression")
    if source not in ref_ids or source == item.get("refId"):
        problems.append(
            f"{name}: expression {item.get('refId')} reads {source!r}, "
            "not another refId of the rule"
        )
    return problems


def _rule_query_problems(
    item: dict[str, Any], model: dict[str, Any], name: str, known: set[str]
) -> list[str]:
    """A rule's SQL query: a known data source, some rawSql, time_series format and a
    relativeTimeRange, as Grafana's alerting requires."""
    problems = []
    if item.get("datasourceUid") not in known:
        problems.append(f"{name}: {item.get('refId')} uses unknown data source")
    if not str(model.get("rawSql", "")).strip():
        problems.append(f"{name}: {item.get('refId')} has no rawSql")
    if model.get("format") != "time_series":
        problems.append(
            f"{name}: {item.get('refId')} must use format time_series "
            "(Grafana alerts do not accept table-format SQL)"
        )
    if "relativeTimeRange" not in item:
        problems.append(f"{name}: {item.get('refId')} has no relativeTimeRange")
    return problems


# --- running -------------------------------------------------------------------------


def run_query(
    conn: psycopg.Connection, sql: str, time_range: TimeRange, interval: str = "1m"
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Expand the macros, run the query; return (column names, rows).

    ``interval``: Grafana's ``$__interval``; the default, the sample interval, gives one
    history point per sample (test_history_panel.py checks Grafana's own interval)."""
    with conn.cursor() as cur:
        cur.execute(expand_macros(sql, time_range, interval))
        columns = [column.name for column in cur.description or []]
        return columns, list(cur.fetchall())


@dataclass(frozen=True)
class AlertEvaluation:
    """What one evaluation of a rule saw: the reduced value and whether the rule fires."""

    value: float | None
    firing: bool


def evaluate_rule(
    rule: dict[str, Any], conn: psycopg.Connection, now: datetime | None = None
) -> AlertEvaluation:
    """Evaluate the rule's condition once (the reduce/threshold chain this project uses).

    A query node yields its time series (the last numeric column over the rows, in
    order); ``reduce`` supports last/max/min/sum/count; ``threshold`` supports gt/lt.
    The pending period (``for``) is a matter of repeated evaluations and not modelled.
    """
    nodes = {item["refId"]: item for item in rule["data"]}
    end = now or datetime.now(UTC)
    cache: dict[str, Any] = {}

    def value_of(ref_id: str) -> Any:
        if ref_id in cache:
            return cache[ref_id]
        item = nodes[ref_id]
        model = item.get("model") or {}
        if item.get("datasourceUid") != EXPRESSION_UID:
            window = item.get("relativeTimeRange") or {}
            time_range = TimeRange(
                end - timedelta(seconds=window.get("from", 600)),
                end - timedelta(seconds=window.get("to", 0)),
            )
            columns, rows = run_query(conn, model["rawSql"], time_range)
            if "time" not in columns:
                raise GrafanaError(f"alert query {ref_id} returns no 'time' column: {columns}")
            values = [_number(row[-1]) for row in rows]
            result: Any = [value for value in values if value is not None]
        elif model.get("type") == "reduce":
            series = value_of(model["expression"])
            result = _reduce(series, model.get("reducer", "last"))
        elif model.get("type") == "threshold":
            value = value_of(model["expression"])
            evaluator = model["conditions"][0]["evaluator"]
            result = _threshold(value, evaluator["type"], evaluator["params"])
        else:
            raise GrafanaError(f"expression type {model.get('type')!r} is not supported here")
        cache[ref_id] = result
        return result

    condition = value_of(rule["condition"])
    reduced = next(
        (
            cache[ref]
            for ref, item in nodes.items()
            if (item.get("model") or {}).get("type") == "reduce"
        ),
        None,
    )
    return AlertEvaluation(value=reduced, firing=bool(condition))


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    raise GrafanaError(f"alert value {value!r} is not a number")


def _reduce(series: list[float], reducer: str) -> float | None:
    if not series:
        return None
    reducers = {
        "last": lambda s: s[-1],
        "max": max,
        "min": min,
        "sum": sum,
        "count": lambda s: float(len(s)),
    }
    if reducer not in reducers:
        raise GrafanaError(f"reducer {reducer!r} is not supported here")
    return float(reducers[reducer](series))


def _threshold(value: float | None, kind: str, params: list[float]) -> bool:
    if value is None:
        return False
    if kind == "gt":
        return value > params[0]
    if kind == "lt":
        return value < params[0]
    raise GrafanaError(f"threshold type {kind!r} is not supported here")
