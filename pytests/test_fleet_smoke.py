"""Smoke test of the synthetic fleet: a tiny fleet, the view's invariants, view = baseline.

The full benchmark (`buildqueue bench`) stays out of the test run; this checks that the
generator loads, that the view built over it keeps its invariants, that the view and
the benchmark's one-query baseline return the same rows, and that the two planner
decisions the view's speed rests on still hold (sizes do not matter for those).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.perf.benchmark import CurveFleet, check_same_rows, queued_systems, time_curve_point
from buildqueue.perf.fleet import FleetShape, generate
from buildqueue.perf.loader import load_fleet
from buildqueue.perf.plans import (
    deduplicates_dependencies,
    dependency_join_estimate,
    explain,
    nodes,
)
from buildqueue.report import fetch_rows, view_query
from support.scratch import ScratchSchemas, scratch_name

SOURCE_SCHEMA = scratch_name("fleet_smoke")
VIEW_SCHEMA = scratch_name("fleet_smoke_view")
SHAPE = FleetShape(systems=40, packages=30, history=1, seed=7)


@pytest.fixture(scope="module")
def fleet_conn(
    database: Database, module_scratch_schema: ScratchSchemas
) -> Iterator[psycopg.Connection]:
    """The tiny fleet loaded into a scratch schema and the view built over it."""
    project = DbtProject(
        database,
        target="ci",
        schema=module_scratch_schema("fleet_smoke_view"),
        vars={"source_schema": module_scratch_schema("fleet_smoke")},
    )
    with database.connect() as conn:
        load_fleet(project, conn, SOURCE_SCHEMA, SHAPE)
        project.invoke("run", "--select", "view_build_queue_status")
        yield conn


@pytest.fixture(scope="module")
def rows(fleet_conn: psycopg.Connection) -> list[dict[str, Any]]:
    return fetch_rows(fleet_conn, VIEW_SCHEMA)


def test_every_queued_system_is_reported(rows: list[dict[str, Any]]) -> None:
    assert len(rows) == SHAPE.systems


def test_view_invariants_hold_on_the_fleet(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        counts = [row[c] for c in ("completed_packages", "building_packages", "pending_packages")]
        assert sum(counts) == row["total_packages"], row
        assert min(counts) >= 0, row
        assert 0 <= row["cached_packages"] <= row["completed_packages"], row
        assert len(row["worker_ids"]) == row["active_workers"], row
        if row["status"] == "ready_for_system_build":
            assert row["completed_packages"] == row["total_packages"], row
        if row["status"] == "building":
            assert row["active_workers"] > 0, row


def test_fleet_exercises_every_state(rows: list[dict[str, Any]]) -> None:
    """The invariants above are only worth something if every branch is reached."""
    assert {row["status"] for row in rows} == {"pending", "building", "ready_for_system_build"}
    assert any(row["has_stale_workers"] for row in rows)
    assert any(not row["has_stale_workers"] and row["active_workers"] for row in rows)
    assert any(row["cache_status"] == "waiting_for_cache_push" for row in rows)


def test_view_and_baseline_agree(fleet_conn: psycopg.Connection) -> None:
    assert check_same_rows(fleet_conn, VIEW_SCHEMA, SOURCE_SCHEMA) == SHAPE.systems


def test_unique_dependency_rows_are_not_deduplicated_again(fleet_conn: psycopg.Connection) -> None:
    """The primary key proves (system, package) unique: the plan must not group by package."""
    assert not deduplicates_dependencies(explain(fleet_conn, view_query(VIEW_SCHEMA)))


def test_without_the_primary_key_the_view_deduplicates(fleet_conn: psycopg.Connection) -> None:
    """The same check sees de-duplication when it is needed, so the test above can fail."""
    with fleet_conn.transaction(force_rollback=True):
        fleet_conn.execute(
            f"alter table {SOURCE_SCHEMA}.derivation_dependencies "
            "drop constraint derivation_dependencies_pkey"
        )
        assert deduplicates_dependencies(explain(fleet_conn, view_query(VIEW_SCHEMA)))


def test_dependency_join_is_sized_from_the_rows_it_returns(fleet_conn: psycopg.Connection) -> None:
    """Without `nixos_id + 0` the planner expects about 2 % of the rows here (50x too few)."""
    estimate = dependency_join_estimate(explain(fleet_conn, view_query(VIEW_SCHEMA), analyze=True))
    assert 1 / 3 < estimate.ratio < 3, estimate


def test_queue_can_run_in_parallel_however_few_pages_it_spans(
    fleet_conn: psycopg.Connection,
) -> None:
    """The queue's thirds make a Parallel Append: no 8 MB scan needed for workers.

    This fleet's tables are far below min_parallel_table_scan_size, as a queue of a few
    hundred systems is among years of history: a single scan of the queue would get no
    worker at any cost setting. With parallelism made free, the plan must use the three
    thirds of int_system_packages_semi_joined (docs/performance.md, no cliff).
    """
    with fleet_conn.transaction(force_rollback=True):
        fleet_conn.execute("set local parallel_setup_cost = 0")
        fleet_conn.execute("set local parallel_tuple_cost = 0")
        plan = explain(fleet_conn, view_query(VIEW_SCHEMA))
    appends = [
        node for node in nodes(plan) if node["Node Type"] == "Append" and node.get("Parallel Aware")
    ]
    assert appends, "no Parallel Append in the view's plan"
    assert len(appends[0]["Plans"]) == 3


def test_generator_is_deterministic() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def contents(shape: FleetShape = SHAPE) -> dict[str, str]:
        tables = generate(shape, now)
        try:
            return {table: "".join(tables.chunks(table)) for table in tables.files}
        finally:
            tables.close()

    first, second = contents(), contents()
    assert first == second
    assert contents(FleetShape(40, 30, 1, seed=8)) != first


def test_history_curve_shrinks_the_queue_and_restores_it(fleet_conn: psycopg.Connection) -> None:
    """`./run bench --history-curve` parks queued systems: the view must follow exactly."""
    fleet = CurveFleet(SHAPE, SOURCE_SCHEMA, VIEW_SCHEMA, queued_systems(fleet_conn, SOURCE_SCHEMA))
    assert len(fleet.queued) == SHAPE.systems
    try:
        time_curve_point(fleet_conn, [fleet], 10, runs=1, log=lambda line: None)
        assert [point.queued for point in fleet.points] == [10]
        assert "join estimate" in fleet.points[0].plan
        rows = fetch_rows(fleet_conn, VIEW_SCHEMA)
        kept = {system_id for system_id, _ in fleet.queued[:10]}
        assert {row["nixos_id"] for row in rows} == kept
    finally:
        time_curve_point(fleet_conn, [fleet], SHAPE.systems, runs=1, log=lambda line: None)
    assert len(fetch_rows(fleet_conn, VIEW_SCHEMA)) == SHAPE.systems
