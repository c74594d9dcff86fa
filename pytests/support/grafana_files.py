"""The Grafana provisioning files of grafana/, read without a Grafana server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from buildqueue.perf import corpus

GRAFANA_DIR, DASHBOARD_FILE = corpus.GRAFANA, corpus.DASHBOARD
ALERTING_FILE, DATASOURCES_FILE = corpus.ALERTING, corpus.DATASOURCES
DASHBOARD_PROVIDERS_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "buildqueue.yaml"
EXPRESSION_UID = "__expr__"  # server-side expressions: reduce, threshold
DASHBOARD_DATASOURCE_UID = "-- Dashboard --"  # hands a panel another panel's rows


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def load_dashboard(path: Path = DASHBOARD_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def alert_rules(alerting: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(group, rule) for every alert rule of the alerting file."""
    return [(g, rule) for g in alerting.get("groups", []) for rule in g.get("rules", [])]


def rules_by_uid() -> dict[str, dict[str, Any]]:
    """Every provisioned alert rule by its uid (each uid once)."""
    rules = [rule for _, rule in alert_rules(load_yaml(ALERTING_FILE))]
    by_uid = {rule["uid"]: rule for rule in rules}
    assert len(by_uid) == len(rules), "two alert rules share a uid"
    return by_uid
