"""docs/replicas.md is checked against the files and code it describes.

Its replica data source must be the shipped one with only the name, uid and address
changed; its dashboard command must move every panel, and nothing else, to the replica
data source, leaving files Grafana would accept; its SQL must be the queries
`support.replica` holds (and pytests/test_replica.py runs).
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from buildqueue.paths import PROJECT_DIR
from support import grafana_checks, grafana_files
from support.replica import PRIMARY_REPLICATION_QUERY, STANDBY_DELAY_QUERY

DOC = PROJECT_DIR / "docs" / "replicas.md"
PRIMARY_UID = "buildqueue-postgres"
REPLICA_UID = "buildqueue-postgres-replica"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def replica_source() -> dict[str, Any]:
    (block,) = [b for b in _blocks("yaml") if REPLICA_UID in b]
    (source,) = yaml.safe_load(block)
    return source


def test_replica_data_source_is_the_shipped_one_at_another_address(
    replica_source: dict[str, Any],
) -> None:
    (shipped,) = grafana_files.load_yaml(grafana_files.DATASOURCES_FILE)["datasources"]
    assert shipped["uid"] == PRIMARY_UID
    expected = {
        **shipped,
        "name": f"{shipped['name']} (replica)",
        "uid": REPLICA_UID,
        "url": "${BUILDQUEUE_GRAFANA_REPLICA_PGHOST}:${BUILDQUEUE_GRAFANA_REPLICA_PGPORT}",
    }
    assert replica_source == expected


def _documented_dashboard() -> dict[str, Any]:
    """The dashboard as the doc's `sed` command installs it (run on the shipped file)."""
    (command,) = [line for b in _blocks("sh") for line in b.splitlines() if "sed " in line]
    match = re.search(r"sed '([^']+)' (\S+)", command)
    assert match, command
    expression, path = match.groups()
    assert (PROJECT_DIR / path).resolve() == grafana_files.DASHBOARD_FILE
    out = subprocess.run(
        ["sed", expression, str(grafana_files.DASHBOARD_FILE)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def _uids(node: Any) -> list[str]:
    """Every data source uid referenced anywhere in a JSON document."""
    if isinstance(node, dict):
        found = [str(node["uid"])] if "uid" in node and "type" in node else []
        return found + [uid for value in node.values() for uid in _uids(value)]
    if isinstance(node, list):
        return [uid for item in node for uid in _uids(item)]
    return []


def test_documented_dashboard_reads_the_replica_and_the_alerts_the_primary(
    replica_source: dict[str, Any],
) -> None:
    shipped = grafana_files.load_dashboard()
    installed = _documented_dashboard()
    before, after = _uids(shipped), _uids(installed)
    assert before.count(PRIMARY_UID) > 0
    assert after.count(REPLICA_UID) == before.count(PRIMARY_UID)
    assert PRIMARY_UID not in after
    # nothing but the data source references changed
    assert json.dumps(installed).replace(REPLICA_UID, PRIMARY_UID) == json.dumps(shipped)

    datasources = grafana_files.load_yaml(grafana_files.DATASOURCES_FILE)
    datasources["datasources"].append(replica_source)
    alerting = grafana_files.load_yaml(grafana_files.ALERTING_FILE)
    problems = grafana_checks.structure_problems(
        installed,
        datasources,
        grafana_files.load_yaml(grafana_files.DASHBOARD_PROVIDERS_FILE),
        alerting,
    )
    assert problems == []
    alert_sources = {
        query["datasourceUid"]
        for _, rule in grafana_files.alert_rules(alerting)
        for query in grafana_files.rule_queries(rule)
    }
    assert alert_sources == {PRIMARY_UID}


@pytest.mark.parametrize(
    "query", [STANDBY_DELAY_QUERY, PRIMARY_REPLICATION_QUERY], ids=["standby", "primary"]
)
def test_documented_lag_queries_are_the_tested_ones(query: str) -> None:
    assert query.strip() + "\n" in _blocks("sql")
