"""The view's aggregations run at most once per query, whatever is asked of the view.

On a database in Crystal Forge's shape with its own indexes (support.crystal_forge), every
shape of `./run bench`'s corpus is run with the planner pushed towards the plan that once
took 190 s (an aggregation re-run per system): no hash or merge joins, no materialize
nodes, no parallel workers, so any aggregation on the inner side of a nested loop runs
once per outer row. The view's shape must still run each once. A planted copy of the view
without `materialized` CTEs shows that the check catches the bad shape.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.perf.corpus import V, corpus
from buildqueue.perf.plans import aggregation_runs, explain
from support import crystal_forge

SCHEMA = "monitoring"
ADVERSARIAL = {
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "enable_material": "off",
    "max_parallel_workers_per_gather": "0",
}
RE_RUNNING_SHAPE = f"select * from {V} where active_workers > 0 and latest_heartbeat is not null"


@pytest.fixture(scope="module")
def cf(database: Database) -> Iterator[tuple[DbtProject, psycopg.Connection]]:
    """The example in Crystal Forge's own tables, the view and its history built over it."""
    db = crystal_forge.create_scratch_database(database, "buildqueue_plans")
    try:
        crystal_forge.load_example(db)
        project = DbtProject(db, target="ci", schema=SCHEMA, vars={"source_schema": "public"})
        project.invoke("run", "--select", "view_build_queue_status build_queue_samples")
        options = " ".join(f"-c {k}={v}" for k, v in ADVERSARIAL.items())
        with db.connect(options=f"-c search_path={SCHEMA} {options}") as conn:
            yield project, conn
    finally:
        crystal_forge.drop_database(database, db)


def test_every_shape_aggregates_once(cf: tuple[DbtProject, psycopg.Connection]) -> None:
    project, conn = cf
    runs = {name: aggregation_runs(explain(conn, q)) for name, q in corpus(project, conn).items()}
    assert runs["select *"] == 1
    assert {name: n for name, n in runs.items() if n > 1} == {}


def test_the_check_catches_an_inlined_aggregation(
    cf: tuple[DbtProject, psycopg.Connection],
) -> None:
    _, conn = cf
    definition = conn.execute(f"select pg_get_viewdef('{V}'::regclass)").fetchone()[0]  # type: ignore[index]
    assert " AS MATERIALIZED (" in definition
    planted = definition.replace(" AS MATERIALIZED (", " AS NOT MATERIALIZED (")
    conn.execute(sql.SQL("create temporary view planted as {}").format(sql.SQL(planted)))
    query = RE_RUNNING_SHAPE.replace(V, "planted")
    assert aggregation_runs(explain(conn, query)) > 1
