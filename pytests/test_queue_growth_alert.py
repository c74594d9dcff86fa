"""The "Queue growing over window" alert: the dbt analysis and the Grafana rule agree.

Both read the queue history (build_queue_samples). Each case plants a history of pending
packages in a scratch samples table, then runs the compiled analysis and evaluates the
Grafana rule (its SQL with macros expanded, then reduce and threshold) on it.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.sampler import SAMPLE_MODEL
from support import grafana_checks, grafana_files
from support.analyses import COMPILED_DIR

ANALYSIS = "alert_queue_growing_over_window"
RULE_UID = "buildqueue-queue-growing-window"

HISTORIES = {
    # minutes ago -> pending packages; the default window is 30 minutes
    "steady growth": ({45: 10, 35: 12, 25: 15, 15: 15, 5: 20}, 8),
    "shrank once in the window": ({45: 10, 35: 12, 25: 15, 15: 14, 5: 20}, 0),
    "flat": ({35: 12, 25: 12, 5: 12}, 0),
    "shrinking": ({35: 20, 5: 10}, 0),
    "history shorter than the window": ({25: 10, 15: 12, 5: 20}, 0),
    "grew before the window only": ({45: 5, 35: 12, 25: 12, 5: 12}, 0),
    "a missed sample is no shrinking": ({35: 12, 5: 13}, 1),
    "no history": ({}, 0),
}


def plant(database: Database, schema: str, history: dict[int, int]) -> None:
    """Replace the samples with ``history`` (pending packages by age in minutes)."""
    table = sql.Identifier(schema, SAMPLE_MODEL)
    with database.connect() as conn, conn.transaction():
        conn.execute(sql.SQL("delete from {}").format(table))
        for age, pending in history.items():
            conn.execute(
                sql.SQL(
                    "insert into {} select now() - %s * interval '1 minute',"
                    " now() - %s * interval '1 minute', 1, 1, 0, 0, %s, 0, 0, 0, 1"
                ).format(table),
                [age, age, pending],
            )


def analysis_rows(
    project: DbtProject, database: Database, vars: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    project.invoke("compile", "--select", ANALYSIS, vars=vars)
    compiled = (COMPILED_DIR / f"{ANALYSIS}.sql").read_text()
    assert f'"{project.schema}"."{SAMPLE_MODEL}"' in compiled
    with database.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(compiled)
        return list(cur.fetchall())


def rule() -> dict[str, Any]:
    alerting = grafana_files.load_yaml(grafana_files.ALERTING_FILE)
    (found,) = [r for _, r in grafana_files.alert_rules(alerting) if r["uid"] == RULE_UID]
    return found


def evaluate(database: Database, schema: str) -> grafana_checks.AlertEvaluation:
    with database.connect(options=f"-c search_path={schema}") as conn:
        return grafana_checks.evaluate_rule(rule(), conn)


@pytest.mark.parametrize(("history", "growth"), HISTORIES.values(), ids=HISTORIES.keys())
def test_analysis_and_grafana_rule_agree(
    database: Database,
    samples_project: DbtProject,
    samples_schema: str,
    history: dict[int, int],
    growth: int,
) -> None:
    plant(database, samples_schema, history)
    (row,) = analysis_rows(samples_project, database)
    assert row["pending_growth"] == growth
    evaluation = evaluate(database, samples_schema)
    assert (evaluation.value, evaluation.firing) == (growth, growth > 0)


def test_the_window_is_a_var(
    database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    """With a 10-minute window, the dip 15 minutes ago is before the window: growth 14 -> 20."""
    plant(database, samples_schema, HISTORIES["shrank once in the window"][0])
    (row,) = analysis_rows(samples_project, database, {"queue_growth_window": "10 minutes"})
    assert (row["pending_at_start"], row["pending_now"], row["pending_growth"]) == (14, 20, 6)
    assert row["samples_in_window"] == 2


def test_the_rule_reads_the_queue_history() -> None:
    (query,) = grafana_files.rule_queries(rule())
    assert "from build_queue_samples" in query["model"]["rawSql"]
    assert "view_build_queue_status" not in query["model"]["rawSql"]
    assert rule()["panelId"] == 3  # the "Queue depth over time" panel
