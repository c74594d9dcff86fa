"""The Grafana dashboard and alert rules in grafana/, read and run without a Grafana server.

No Grafana can be installed where the tests run, so this module does the parts of Grafana
the tests need: it loads the provisioning files, lists every panel and alert query,
checks that the pieces reference each other (uids, refIds, the data source, the panels
that reuse another panel's rows), expands the PostgreSQL data source's macros
(``$__timeFilter(col)`` ...) the way Grafana does, and evaluates an alert rule's
reduce/threshold chain on the query's result. The panels' transformations run in
Grafana's own code: see `buildqueue.transformations`.

One query per refresh: a single panel (the *source panel*) queries the view; the others
use Grafana's built-in Dashboard data source on its rows, so a viewer's refresh costs the
database one view query (`view_queries`), not one per panel.

The macro expansion follows Grafana's PostgreSQL macro engine
(pkg/tsdb/grafana-postgresql-datasource/macros.go): times are rendered as quoted
RFC 3339 UTC literals, and an unknown macro is an error, as it is in Grafana.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import yaml

from buildqueue.paths import PROJECT_DIR

GRAFANA_DIR = PROJECT_DIR / "grafana"
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "buildqueue.yaml"
DASHBOARD_PROVIDERS_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "buildqueue.yaml"
ALERTING_FILE = GRAFANA_DIR / "provisioning" / "alerting" / "buildqueue-alerts.yaml"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "build-queue.json"

EXPRESSION_UID = "__expr__"
"""The pseudo data source of server-side expressions (reduce, threshold, math)."""

DASHBOARD_DATASOURCE_UID = "-- Dashboard --"
"""Grafana's built-in data source that hands a panel another panel's results."""

VIEW_NAME = "view_build_queue_status"
_READS_VIEW = re.compile(rf"\b{VIEW_NAME}\b", re.IGNORECASE)

VIEW_QUERY_EXCEPTIONS: dict[int, str] = {
    3: "Queue depth over time: it moves to the queue-history table (issue 11, point 2)",
}
"""Panels allowed to query the view besides the source panel, with the reason.

An entry whose panel no longer reads the view is reported, so the exception goes away
with the query it excused.
"""

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_LEFTOVER = re.compile(r"\$\{?_*[a-zA-Z]")
_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class GrafanaError(Exception):
    """A Grafana file is malformed, or a query uses something this module cannot run."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's (or alert's) time range that the macros render."""

    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: timedelta, now: datetime | None = None) -> TimeRange:
        """``now - span`` .. ``now``, like Grafana's relative ranges (now-30d .. now)."""
        end = now or datetime.now(UTC)
        return cls(end - span, end)


# --- loading -------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    """One provisioning file as a dict (a `GrafanaError` when it is not a mapping)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise GrafanaError(f"{path}: expected a YAML mapping at the top level")
    return data


def load_dashboard(path: Path = DASHBOARD_FILE) -> dict[str, Any]:
    """The dashboard JSON as a dict."""
    return json.loads(path.read_text())


def datasource_uids(datasources: dict[str, Any]) -> set[str]:
    """The uids the data source provisioning file defines."""
    return {str(ds["uid"]) for ds in datasources.get("datasources", []) if ds.get("uid")}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def is_dashboard_datasource(ref: Any) -> bool:
    """Whether a panel's or target's datasource is Grafana's Dashboard data source."""
    return _datasource_uid(ref) == DASHBOARD_DATASOURCE_UID


def sql_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query a refresh sends to the database (``rawSql``).

    Targets on the Dashboard data source send nothing: Grafana hands them the rows of
    the panel they name (``panelId``).
    """
    for panel, target in panel_targets(dashboard):
        if not is_dashboard_datasource(target.get("datasource") or panel.get("datasource")):
            yield panel, target


def view_queries(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The SQL targets that read the view: what one refresh of one viewer costs the view."""
    return [
        (panel, target)
        for panel, target in sql_targets(dashboard)
        if _READS_VIEW.search(str(target.get("rawSql", "")))
    ]


def source_panel(dashboard: dict[str, Any], panel: dict[str, Any]) -> dict[str, Any]:
    """The panel whose rows a Dashboard-data-source ``panel`` reuses (a `GrafanaError`)."""
    if not is_dashboard_datasource(panel.get("datasource")):
        raise GrafanaError(f"panel {panel.get('id')} does not use the Dashboard data source")
    targets = panel.get("targets") or []
    if len(targets) != 1:
        raise GrafanaError(f"panel {panel.get('id')} has {len(targets)} queries, not one")
    (target,) = targets
    matches = [p for p in panels(dashboard) if p.get("id") == target.get("panelId")]
    if not matches:
        raise GrafanaError(f"panel {panel.get('id')} reads unknown panel {target.get('panelId')}")
    return matches[0]


def alert_rules(alerting: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(group, rule) for every alert rule of the alerting provisioning file."""
    for group in alerting.get("groups", []):
        for rule in group.get("rules", []):
            yield group, rule


def rule_queries(rule: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The data-source queries of a rule (its ``data`` items that are not expressions)."""
    for item in rule.get("data", []):
        if item.get("datasourceUid") != EXPRESSION_UID:
            yield item


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


def _datasource_uid(ref: Any) -> str | None:
    return ref.get("uid") if isinstance(ref, dict) else None


def _dashboard_problems(dashboard: dict[str, Any], known: set[str]) -> list[str]:
    problems = []
    if not dashboard.get("uid"):
        problems.append("dashboard: no uid")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("dashboard: no integer schemaVersion")
    ids = [panel.get("id") for panel in panels(dashboard)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"dashboard: panel ids missing or repeated: {ids}")
    for panel in panels(dashboard):
        name = f"panel {panel.get('id')} ({panel.get('title')!r})"
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{name}: no query")
        ref_ids = [target.get("refId") for target in targets]
        if len(ref_ids) != len(set(ref_ids)) or None in ref_ids:
            problems.append(f"{name}: query refIds missing or repeated: {ref_ids}")
        if is_dashboard_datasource(panel.get("datasource")):
            problems += _reuse_problems(dashboard, panel, name)
            continue
        if _datasource_uid(panel.get("datasource")) not in known:
            problems.append(f"{name}: data source {panel.get('datasource')} is not provisioned")
        for target in targets:
            uid = _datasource_uid(target.get("datasource") or panel.get("datasource"))
            if uid not in known:
                problems.append(f"{name}: query {target.get('refId')} uses unknown data source")
            if not str(target.get("rawSql", "")).strip():
                problems.append(f"{name}: query {target.get('refId')} has no rawSql")
            if target.get("format") not in {"table", "time_series"}:
                problems.append(
                    f"{name}: query {target.get('refId')} has no table/time_series format"
                )
    return problems + _view_query_problems(dashboard)


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
                f"{VIEW_NAME}: remove it from VIEW_QUERY_EXCEPTIONS in buildqueue/grafana.py"
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
    problems = []
    if alerting.get("apiVersion") != 1:
        problems.append("alerting: apiVersion is not 1")
    panel_ids = {panel.get("id") for panel in panels(dashboard)}
    for group, rule in alert_rules(alerting):
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
            model = item.get("model") or {}
            if model.get("refId", item.get("refId")) != item.get("refId"):
                problems.append(
                    f"{name}: {item.get('refId')}'s model has refId {model.get('refId')}"
                )
            if item.get("datasourceUid") == EXPRESSION_UID:
                source = model.get("expression")
                if source not in ref_ids or source == item.get("refId"):
                    problems.append(
                        f"{name}: expression {item.get('refId')} reads {source!r}, "
                        "not another refId of the rule"
                    )
            else:
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
        if rule.get("dashboardUid") and rule.get("dashboardUid") != dashboard.get("uid"):
            problems.append(f"{name}: links to unknown dashboard {rule.get('dashboardUid')}")
        if rule.get("panelId") is not None and rule.get("panelId") not in panel_ids:
            problems.append(f"{name}: links to unknown panel {rule.get('panelId')}")
    return problems


# --- macros --------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339Nano in UTC, as Grafana renders macro times ('...T09:00:00Z')."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def parse_interval(text: str) -> float:
    """Seconds in a Grafana interval such as '5m' or '1h'."""
    match = _INTERVAL.match(text.strip().strip("'"))
    if not match:
        raise GrafanaError(f"cannot parse interval {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """Expand the PostgreSQL data source's macros in ``sql`` the way Grafana does."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [arg.strip() for arg in match.group(2).split(",")]
        start, end = rfc3339(time_range.start), rfc3339(time_range.end)
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name in {"__timeGroup", "__timeGroupAlias"}:
            if len(args) < 2:
                raise GrafanaError(f"macro ${name} needs a column and an interval")
            seconds = _go_float(parse_interval(args[1]))
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            start_s, end_s = int(time_range.start.timestamp()), int(time_range.end.timestamp())
            return f"{args[0]} >= {start_s} AND {args[0]} <= {end_s}"
        if name == "__unixEpochFrom":
            return str(int(time_range.start.timestamp()))
        if name == "__unixEpochTo":
            return str(int(time_range.end.timestamp()))
        raise GrafanaError(f"unknown macro ${name}")

    expanded = _MACRO.sub(replace, sql)
    if _LEFTOVER.search(expanded):
        raise GrafanaError(f"unexpanded variable left in query: {expanded!r}")
    return expanded


def _go_float(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


# --- running -------------------------------------------------------------------------


def run_query(
    conn: psycopg.Connection, sql: str, time_range: TimeRange
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Expand the macros, run the query; return (column names, rows)."""
    with conn.cursor() as cur:
        cur.execute(expand_macros(sql, time_range))
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
