"""The Grafana dashboard and alert rules in grafana/, read without a Grafana server.

It loads the provisioning files, lists every panel and alert query and expands the
PostgreSQL data source's macros (``$__timeFilter(col)`` ...) the way Grafana does. The
tests' checks of the files and the alert evaluation are in pytests/support/grafana_checks.py;
the panels' transformations run in Grafana's own code (pytests/support/transformations.py).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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

VIEW_QUERY_EXCEPTIONS: dict[int, str] = {}
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


def datasource_uid(ref: Any) -> str | None:
    return ref.get("uid") if isinstance(ref, dict) else None


def is_dashboard_datasource(ref: Any) -> bool:
    """Whether a panel's or target's datasource is Grafana's Dashboard data source."""
    return datasource_uid(ref) == DASHBOARD_DATASOURCE_UID


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


def expand_macros(sql: str, time_range: TimeRange, interval: str | None = None) -> str:
    """Expand the PostgreSQL data source's macros in ``sql`` the way Grafana does.

    ``interval``: what Grafana's front end puts for ``$__interval`` (e.g. "3h")."""
    if interval is not None:
        sql = sql.replace("$__interval", interval)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        render = _MACROS.get(name)
        if render is None:
            raise GrafanaError(f"unknown macro ${name}")
        return render(name, [arg.strip() for arg in match.group(2).split(",")], time_range)

    expanded = _MACRO.sub(replace, sql)
    if _LEFTOVER.search(expanded):
        raise GrafanaError(f"unexpanded variable left in query: {expanded!r}")
    return expanded


_MacroRenderer = Callable[[str, list[str], TimeRange], str]
"""Renders one macro: (its name, its arguments, the time range) -> SQL."""


def _time_filter(_name: str, args: list[str], time_range: TimeRange) -> str:
    """``$__timeFilter(col)``: the column between the range's RFC 3339 ends."""
    start, end = rfc3339(time_range.start), rfc3339(time_range.end)
    return f"{args[0]} BETWEEN '{start}' AND '{end}'"


def _time_group(name: str, args: list[str], _time_range: TimeRange) -> str:
    """``$__timeGroup(col, interval)``: the column floored to the interval, in epoch seconds."""
    if len(args) < 2:
        raise GrafanaError(f"macro ${name} needs a column and an interval")
    seconds = _go_float(parse_interval(args[1]))
    return f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"


def _time_group_alias(name: str, args: list[str], time_range: TimeRange) -> str:
    """``$__timeGroupAlias(col, interval)``: `$__timeGroup` named "time"."""
    return _time_group(name, args, time_range) + ' AS "time"'


def _unix_epoch_filter(_name: str, args: list[str], time_range: TimeRange) -> str:
    """``$__unixEpochFilter(col)``: an epoch-seconds column within the range."""
    start, end = _epoch(time_range.start), _epoch(time_range.end)
    return f"{args[0]} >= {start} AND {args[0]} <= {end}"


def _epoch(moment: datetime) -> int:
    """Whole Unix seconds, as Grafana's ``$__unixEpoch*`` macros render a time."""
    return int(moment.timestamp())


_MACROS: dict[str, _MacroRenderer] = {
    "__time": lambda _name, args, _range: f'{args[0]} AS "time"',
    "__timeEpoch": lambda _name, args, _range: f'extract(epoch from {args[0]}) as "time"',
    "__timeFilter": _time_filter,
    "__timeFrom": lambda _name, _args, time_range: f"'{rfc3339(time_range.start)}'",
    "__timeTo": lambda _name, _args, time_range: f"'{rfc3339(time_range.end)}'",
    "__timeGroup": _time_group,
    "__timeGroupAlias": _time_group_alias,
    "__unixEpochFilter": _unix_epoch_filter,
    "__unixEpochFrom": lambda _name, _args, time_range: str(_epoch(time_range.start)),
    "__unixEpochTo": lambda _name, _args, time_range: str(_epoch(time_range.end)),
}
"""Grafana's PostgreSQL macros by name (macros.go's evaluateMacro); any other is an error."""


def _go_float(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
