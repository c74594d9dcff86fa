"""Smoke test of the synthetic fleet and the benchmark: a tiny fleet, the view's invariants.

The full benchmark (`buildqueue bench`) stays out of the test run; this checks that the
generator loads in Crystal Forge's shape, that the view built over it keeps its
invariants, that the queue can run in parallel, and that the benchmark's steps (a month
of history, the index step, every corpus shape timed) work on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.perf.bench import fill_history, parse_shape, time_shapes
from buildqueue.perf.catalog import set_index_step
from buildqueue.perf.corpus import corpus
from buildqueue.perf.fleet import FleetShape, generate
from buildqueue.perf.loader import load_fleet
from buildqueue.perf.plans import explain, nodes
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
        project.invoke("run", "--select", "view_build_queue_status build_queue_samples")
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
        plan = explain(fleet_conn, view_query(VIEW_SCHEMA).as_string(fleet_conn))
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


def test_bench_times_every_shape_with_and_without_the_index_step(
    fleet_conn: psycopg.Connection, database: Database
) -> None:
    assert fill_history(fleet_conn, VIEW_SCHEMA, "1 hour", timedelta(days=2)) == 47
    fleet_conn.execute(f"set search_path to {VIEW_SCHEMA}")
    project = DbtProject(
        database, target="ci", schema=VIEW_SCHEMA, vars={"source_schema": SOURCE_SCHEMA}
    )
    shapes = corpus(project, fleet_conn)
    for on in (True, False):
        set_index_step(fleet_conn, SOURCE_SCHEMA, on=on)
        index = fleet_conn.execute(
            "select to_regclass(%s)", [f"{SOURCE_SCHEMA}.idx_derivations_package_status"]
        ).fetchone()
        assert (index is not None and index[0] is not None) == on
        timings = time_shapes(fleet_conn, shapes, runs=1)
        assert set(timings) == set(shapes) and all(t > 0 for t, _ in timings.values())


def test_bad_fleet_size_says_the_format() -> None:
    assert parse_shape("30x20+h2") == FleetShape(30, 20, history=2)
    with pytest.raises(ValueError, match="SYSTEMSxPACKAGES"):
        parse_shape("30by20")
