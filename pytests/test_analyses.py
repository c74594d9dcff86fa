"""The spec's example and alert queries (analyses/) compile and return what the example implies."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from buildqueue.dbt import DbtError, DbtOutcome, DbtProject
from support.analyses import ANALYSES_DIR, COMPILED_DIR, analysis_names, compile_analyses
from support.example import EXPECTED_ROWS
from support.scratch import VIEW_SCHEMA

SPEC_QUERIES = {
    "systems_with_most_work_remaining",
    "stale_workers_requiring_intervention",
    "cache_push_lag",
    "worker_utilization_summary",
    "queue_depth_by_commit",
    "alert_stale_workers_detected",
    "alert_queue_growing_unchecked",
    "alert_system_stuck_building",
}

HISTORY_QUERIES = {"alert_queue_growing_over_window", "alert_queue_stalled"}
"""Analyses over the queue history (build_queue_samples); pytests/test_queue_growth_alert.py."""


@pytest.fixture(scope="module")
def compiled(project: DbtProject, build: DbtOutcome) -> dict[str, str]:
    """Every analysis compiled by `dbt compile` (read from target/compiled/)."""
    return compile_analyses(project)


def _run(conn: psycopg.Connection, sql: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def test_the_five_examples_and_four_alerts_are_analyses() -> None:
    assert set(analysis_names()) == SPEC_QUERIES | HISTORY_QUERIES


def test_every_analysis_is_documented() -> None:
    documented = yaml.safe_load((ANALYSES_DIR / "_analyses.yml").read_text())["analyses"]
    assert {entry["name"] for entry in documented} == SPEC_QUERIES | HISTORY_QUERIES
    assert all(entry.get("description", "").strip() for entry in documented)


def test_analyses_compile_to_sql_over_the_view(compiled: dict[str, str]) -> None:
    assert set(compiled) == SPEC_QUERIES | HISTORY_QUERIES
    for name, sql in compiled.items():
        relation = "build_queue_samples" if name in HISTORY_QUERIES else "view_build_queue_status"
        assert f'"{VIEW_SCHEMA}"."{relation}"' in sql, name
        assert "{{" not in sql and "{%" not in sql, name


def test_systems_with_most_work_remaining(conn: psycopg.Connection, compiled: dict) -> None:
    rows = _run(conn, compiled["systems_with_most_work_remaining"])
    assert [(r["system_name"], r["work_remaining"], r["active_workers"]) for r in rows] == [
        ("server-c", 5, 3),
        ("server-a", 3, 2),
    ]


def test_stale_workers_requiring_intervention(conn: psycopg.Connection, compiled: dict) -> None:
    rows = _run(conn, compiled["stale_workers_requiring_intervention"])
    assert [r["system_name"] for r in rows] == ["server-c"]
    (row,) = rows
    assert row["worker_ids"] == ["worker-2", "worker-3", "worker-4"]
    assert row["building_packages"] == 3
    # the fixture's latest server-c heartbeat is 600 s old at load time
    assert timedelta(minutes=10) <= row["time_since_heartbeat"] < timedelta(hours=1)


def test_cache_push_lag(conn: psycopg.Connection, compiled: dict) -> None:
    rows = _run(conn, compiled["cache_push_lag"])
    assert [
        (r["system_name"], r["completed_packages"], r["cached_packages"], r["cache_lag"])
        for r in rows
    ] == [("server-c", 45, 40, 5), ("server-a", 7, 5, 2)]
    # the spec's definition of cache_status, not its example table: doc block
    # departure_server_c_cache_status
    assert [r["cache_status"] for r in rows] == [None, None]


def test_worker_utilization_summary(conn: psycopg.Connection, compiled: dict) -> None:
    assert _run(conn, compiled["worker_utilization_summary"]) == [
        {
            "total_active_workers": 5,
            "systems_in_queue": 3,
            "systems_building": 2,
            "systems_ready": 1,
        }
    ]


def test_queue_depth_by_commit(conn: psycopg.Connection, compiled: dict) -> None:
    rows = _run(conn, compiled["queue_depth_by_commit"])
    expected = [
        (row["commit_timestamp"], 1, row["pending_packages"] + row["building_packages"])
        for row in EXPECTED_ROWS
    ]
    assert [(r["time"], r["systems"], r["total_work_remaining"]) for r in rows] == expected
    assert [r["workers_assigned"] for r in rows] == [2, 0, 3]


def test_alert_stale_workers_detected(conn: psycopg.Connection, compiled: dict) -> None:
    assert _run(conn, compiled["alert_stale_workers_detected"]) == [{"stale_systems": 1}]


def test_alert_queue_growing_unchecked(conn: psycopg.Connection, compiled: dict) -> None:
    assert _run(conn, compiled["alert_queue_growing_unchecked"]) == [
        {"packages_remaining": Decimal(8), "is_over_threshold": False}  # the spec's 500
    ]


def test_packages_remaining_threshold_is_a_var(
    conn: psycopg.Connection, project: DbtProject, compiled: dict
) -> None:
    """With a threshold of 7, the example's 8 packages left to build fire the alert."""
    project.invoke(
        "compile",
        "--select",
        "alert_queue_growing_unchecked",
        vars={"packages_remaining_threshold": 7},
    )
    text = (COMPILED_DIR / "alert_queue_growing_unchecked.sql").read_text()
    assert _run(conn, text) == [{"packages_remaining": Decimal(8), "is_over_threshold": True}]


def test_packages_remaining_threshold_must_be_a_count(project: DbtProject) -> None:
    with pytest.raises(DbtError, match="Invalid value for var 'packages_remaining_threshold'"):
        project.invoke(
            "compile",
            "--select",
            "alert_queue_growing_unchecked",
            vars={"packages_remaining_threshold": "many"},
        )


def test_alert_system_stuck_building(conn: psycopg.Connection, compiled: dict) -> None:
    rows = _run(conn, compiled["alert_system_stuck_building"])
    # server-c was reserved three hours ago; server-a twenty minutes ago is not stuck
    assert [r["system_name"] for r in rows] == ["server-c"]
    assert rows[0]["status"] == "building"


def test_stuck_building_threshold_is_a_var(
    conn: psycopg.Connection, project: DbtProject, compiled: dict
) -> None:
    """With a 4-hour threshold, server-c (reserved 3 h ago) is no longer stuck."""
    project.invoke(
        "compile",
        "--select",
        "alert_system_stuck_building",
        vars={"stuck_building_threshold": "4 hours"},
    )
    text = (COMPILED_DIR / "alert_system_stuck_building.sql").read_text()
    assert "interval '4 hours'" in text
    assert _run(conn, text) == []
