"""The analyses/ queries on the example; the growth alert against its Grafana rule on histories."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtError, DbtOutcome, DbtProject
from buildqueue.perf.corpus import analysis_names, compile_analyses
from buildqueue.sampler import SAMPLE_MODEL
from support.example import EXPECTED_ROWS
from support.grafana_checks import evaluate_rule
from support.grafana_files import rules_by_uid
from support.relations import run_dbt
from support.scratch import ScratchSchemas

GROWTH = "alert_queue_growing_over_window"
WORK = [(r["commit_timestamp"], 1, r["pending_packages"] + r["building_packages"],
         r["active_workers"]) for r in EXPECTED_ROWS]  # fmt: skip
CASES = {  # analysis, vars, columns (expressions over its rows) -> rows on the example
    "systems_with_most_work_remaining": ({}, "system_name, work_remaining, active_workers",
                                         [("server-c", 5, 3), ("server-a", 3, 2)]),
    "stale_workers_requiring_intervention": ({}, "system_name, worker_ids, building_packages,"
        " time_since_heartbeat between interval '10 minutes' and interval '1 hour'",  # 600 s old
        [("server-c", ["worker-2", "worker-3", "worker-4"], 3, True)]),
    "cache_push_lag": (  # cache_status: doc block departure_server_c_cache_status
        {}, "system_name, completed_packages, cached_packages, cache_lag, cache_status",
        [("server-c", 45, 40, 5, None), ("server-a", 7, 5, 2, None)]),
    "worker_utilization_summary": ({}, "total_active_workers, systems_in_queue, systems_building,"
                                   " systems_ready", [(5, 3, 2, 1)]),
    "queue_depth_by_commit": ({}, "time, systems, total_work_remaining, workers_assigned", WORK),
    "alert_stale_workers_detected": ({}, "stale_systems", [(1,)]),
    "alert_queue_growing_unchecked": ({}, "packages_remaining, is_over_threshold", [(8, False)]),
    "alert_queue_growing_unchecked 7": ({"packages_remaining_threshold": 7},
                                        "packages_remaining, is_over_threshold", [(8, True)]),
    "alert_system_stuck_building": ({}, "system_name, status", [("server-c", "building")]),
    "alert_system_stuck_building 4 hours": (  # server-c: 3 hours
        {"stuck_building_threshold": "4 hours"}, "system_name", [])}  # fmt: skip


def compiled_now(project: DbtProject, name: str, vars: dict | None = None) -> str:
    return compile_analyses(project, name, vars=vars)[name]


@pytest.fixture(scope="module")
def compiled(project: DbtProject, build: DbtOutcome) -> dict[str, str]:
    return compile_analyses(project)


def test_every_analysis_is_checked(compiled: dict[str, str]) -> None:
    checked = {case.split()[0] for case in CASES} | {GROWTH, "alert_queue_stalled"}
    assert set(analysis_names()) == set(compiled) == checked  # stalled: test_protocol_replay


@pytest.mark.parametrize("case", CASES)
def test_analysis_on_the_example(
    conn: psycopg.Connection, project: DbtProject, compiled: dict[str, str], case: str
) -> None:
    vars, columns, expected = CASES[case]
    name = case.split()[0]
    sql = compiled_now(project, name, vars) if vars else compiled[name]
    assert conn.execute(f"select {columns} from ({sql}) as analysis").fetchall() == expected


def test_a_threshold_must_be_a_count(project: DbtProject, build: DbtOutcome) -> None:
    with pytest.raises(DbtError, match="Invalid value for var 'packages_remaining_threshold'"):
        project.invoke("compile", "--select", "alert_queue_growing_unchecked",
                       vars={"packages_remaining_threshold": "many"})  # fmt: skip


HISTORIES = {  # minutes ago -> pending packages (the window: 30 minutes) -> growth
    "steady growth": ({45: 10, 35: 12, 25: 15, 15: 15, 5: 20}, 8),
    "shrank once in the window": ({45: 10, 35: 12, 25: 15, 15: 14, 5: 20}, 0),
    "flat": ({35: 12, 25: 12, 5: 12}, 0), "shrinking": ({35: 20, 5: 10}, 0),
    "history shorter than the window": ({25: 10, 15: 12, 5: 20}, 0),
    "grew before the window only": ({45: 5, 35: 12, 25: 12, 5: 12}, 0),
    "a missed sample is no shrinking": ({35: 12, 5: 13}, 1), "no history": ({}, 0)}  # fmt: skip


@pytest.fixture(scope="module")
def history(
    project: DbtProject, build: DbtOutcome, module_scratch_schema: ScratchSchemas
) -> DbtProject:
    """The view and an empty queue history in a schema of this module's."""
    samples = replace(project, schema=module_scratch_schema("history"))
    run_dbt(samples, "run", "--select", "view_build_queue_status", SAMPLE_MODEL)
    return samples


def plant(conn: psycopg.Connection, schema: str, ages: dict[int, int]) -> None:
    conn.execute(f"delete from {schema}.{SAMPLE_MODEL}")
    conn.cursor().executemany(f"insert into {schema}.{SAMPLE_MODEL} select now() - %s * interval"
                              " '1 minute', now() - %s * interval '1 minute', 1, 1, 0, 0, %s, 0,"
                              " 0, 0, 1", [(age, age, n) for age, n in ages.items()])  # fmt: skip


def test_the_growth_alert_analysis_is_the_grafana_rule(
    database: Database, history: DbtProject
) -> None:
    sql = compiled_now(history, GROWTH)
    with database.connect(options=f"-c search_path={history.schema}") as conn:
        for case, (ages, growth) in HISTORIES.items():
            plant(conn, history.schema, ages)
            found = conn.execute(f"select pending_growth from ({sql}) as a").fetchall()
            assert found == [(growth,)], case
            evaluation = evaluate_rule(rules_by_uid()["buildqueue-queue-growing-window"], conn)
            assert (evaluation.value, evaluation.firing) == (growth, growth > 0), case


def test_the_growth_window_is_a_var(database: Database, history: DbtProject) -> None:
    """With 10 minutes, the dip 15 minutes ago is before the window: growth 14 -> 20."""
    sql = compiled_now(history, GROWTH, {"queue_growth_window": "10 minutes"})
    with database.connect() as conn:
        plant(conn, history.schema, HISTORIES["shrank once in the window"][0])
        columns = "pending_at_start, pending_now, pending_growth, samples_in_window"
        assert conn.execute(f"select {columns} from ({sql}) as a").fetchall() == [(14, 20, 6, 2)]
