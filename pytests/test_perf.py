"""`./run bench`, `./run load` and the plans on a 40-system fleet; no timing is asserted."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.perf import bench, capacity
from buildqueue.perf.corpus import UPSTREAM, V, corpus, grafana_queries
from buildqueue.perf.plans import aggregation_runs, explain, nodes
from support import crystal_forge

SIZE = "40x30+h1"
# towards the plan that once took 190 s: an aggregation inside a nested loop, run per outer row
ADVERSARIAL = ("enable_hashjoin", "enable_mergejoin", "enable_material")


@pytest.fixture(scope="module")
def fleet(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A scratch database where `./run bench` loaded and timed the small fleet."""
    db = crystal_forge.create_scratch_database(database, "buildqueue_perf")
    output, bench.OUTPUT = bench.OUTPUT, tmp_path_factory.mktemp("bench") / "results.md"
    try:
        assert bench.bench_command(db, Namespace(sizes=[SIZE], target="ci", runs=1, seed=7)) == 0
        yield db
    finally:
        bench.OUTPUT = output
        crystal_forge.drop_database(database, db)


@pytest.fixture(scope="module")
def view(fleet: Database) -> Iterator[psycopg.Connection]:
    """A connection to the fleet's view, parallel plans off so a loop is one execution."""
    options = f"-c search_path={bench.VIEW_SCHEMA} -c max_parallel_workers_per_gather=0"
    with fleet.connect(options=options) as conn:
        yield conn


def test_bench_times_every_shape_with_and_without_the_index_step(fleet: Database) -> None:
    timed = [r.split(" | ") for r in bench.OUTPUT.read_text().splitlines() if r.startswith("| ")]
    shapes = {row[0].removeprefix("| ") for row in timed[2:]}  # after the header and its rule
    assert {"select *", *UPSTREAM, *grafana_queries()} <= shapes
    assert all(row[1].endswith(" ms") and row[4].endswith(" ms") for row in timed[2:])


def test_the_view_keeps_its_invariants_on_the_fleet(view: psycopg.Connection) -> None:
    rows = view.cursor(row_factory=dict_row).execute(f"select * from {V}").fetchall()
    assert len(rows) == bench.parse_shape(SIZE).systems
    for row in rows:
        counts = [row[f"{kind}_packages"] for kind in ("completed", "building", "pending")]
        assert sum(counts) == row["total_packages"] and min(counts) >= 0, row
        assert 0 <= row["cached_packages"] <= row["completed_packages"], row
        assert len(row["worker_ids"]) == row["active_workers"], row
    # the invariants are only worth something if the generator reaches every state
    assert {row["status"] for row in rows} == {"pending", "building", "ready_for_system_build"}
    assert {row["has_stale_workers"] for row in rows if row["active_workers"]} == {True, False}
    assert any(row["cache_status"] == "waiting_for_cache_push" for row in rows)


def test_no_shape_runs_an_aggregation_more_than_once(
    fleet: Database, view: psycopg.Connection
) -> None:
    vars = {"source_schema": bench.SOURCE_SCHEMA}
    shapes = corpus(DbtProject(fleet, "ci", bench.VIEW_SCHEMA, vars=vars), view)
    with view.transaction(force_rollback=True):
        view.execute("; ".join(f"set local {off} = off" for off in ADVERSARIAL))  # type: ignore[arg-type]
        runs = {name: aggregation_runs(explain(view, query)) for name, query in shapes.items()}
        # the same check catches a view whose aggregations are inlined again
        (definition,) = view.execute(f"select pg_get_viewdef('{V}'::regclass)").fetchone()  # type: ignore[misc]
        planted = definition.replace(" AS MATERIALIZED (", " AS NOT MATERIALIZED (")
        view.execute(sql.SQL("create temporary view planted as {}").format(sql.SQL(planted)))
        inlined = aggregation_runs(explain(view, "select * from planted where active_workers > 0"))
    assert runs["select *"] == 1
    assert {name: n for name, n in runs.items() if n > 1} == {}
    assert inlined > 1


def test_the_queue_can_run_in_parallel_however_few_pages_it_spans(view: psycopg.Connection) -> None:
    """The queue's three thirds make a Parallel Append once parallelism is free."""
    with view.transaction(force_rollback=True):
        view.execute("set local parallel_setup_cost = 0; set local parallel_tuple_cost = 0;"
                     " set local max_parallel_workers_per_gather = 2")  # fmt: skip
        plan = explain(view, f"select * from {V}")
    appends = [n for n in nodes(plan) if n["Node Type"] == "Append" and n.get("Parallel Aware")]
    assert appends and len(appends[0]["Plans"]) == 3


def test_load_finds_the_viewer_capacity_with_pgbench(
    fleet: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refresh 0.1 s (pgbench starts some in 1 s): a generous limit fits all, a tiny one none."""
    args = Namespace(sizes=[SIZE], target="ci", refresh=[0.1], seconds=1, limit=60.0,
                     max_viewers=2, seed=7)  # fmt: skip
    assert capacity.load_command(fleet, args) == 0
    assert f"| {bench.parse_shape(SIZE).label} | 2 |" in capsys.readouterr().out.splitlines()
    queries, schema = grafana_queries(), bench.VIEW_SCHEMA
    assert capacity.late_share(fleet, schema, queries, 1, 0.1, seconds=1, limit=1e-5) > 0.9
