"""Redeploys keep the views other people build on top of ours.

dbt's stock view materialization swaps in a new view and drops the old one with
`cascade`, which silently drops every dependent view (a Grafana helper view, an analyst's
rollup). `macros/materializations/view.sql` replaces the view in place when its columns
are kept, so dependents survive; when the columns change incompatibly it falls back to the
swap, which still leaves a correct view.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.report import VIEW_COLUMNS
from support.scratch import ScratchSchemas, scratch_name

SCHEMA = scratch_name("dependents")
VIEW = f"{SCHEMA}.view_build_queue_status"
DEPENDENT = f"{SCHEMA}.building_systems"


@pytest.fixture
def deployment(
    database: Database, project: DbtProject, build: DbtOutcome, scratch_schema: ScratchSchemas
) -> Iterator[tuple[DbtProject, psycopg.Connection]]:
    """Our view in a scratch schema (over the example), and a connection to look at it."""
    with database.connect() as conn:
        yield replace(project, schema=scratch_schema("dependents")), conn


def deploy(project: DbtProject) -> None:
    project.invoke("run", "--select", "view_build_queue_status")


def columns(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0"
        " and not attisdropped order by attnum",
        [VIEW],
    ).fetchall()
    return [name for (name,) in rows]


def test_a_view_built_on_ours_survives_redeploys(
    deployment: tuple[DbtProject, psycopg.Connection],
) -> None:
    project, conn = deployment
    deploy(project)
    conn.execute(
        f"create view {DEPENDENT} as"
        f" select system_name, active_workers from {VIEW} where status = 'building'"
    )
    before = conn.execute(f"select * from {DEPENDENT} order by 1").fetchall()
    assert before, "the example has building systems"
    for _ in range(2):
        deploy(project)
        assert conn.execute(f"select * from {DEPENDENT} order by 1").fetchall() == before
    relations = conn.execute(
        "select relname from pg_class where relnamespace = %s::regnamespace order by 1", [SCHEMA]
    ).fetchall()
    assert relations == [("building_systems",), ("view_build_queue_status",)]


def test_a_view_with_other_columns_is_swapped_for_the_right_one(
    deployment: tuple[DbtProject, psycopg.Connection],
) -> None:
    """Columns PostgreSQL cannot replace in place: dbt's swap, and a correct view after."""
    project, conn = deployment
    conn.execute(f"create schema {SCHEMA}")
    conn.execute(f"create view {VIEW} as select 1 as nixos_id, 'x'::text as something_else")
    conn.execute(f"create view {DEPENDENT} as select nixos_id from {VIEW}")
    deploy(project)
    assert columns(conn) == list(VIEW_COLUMNS)
    assert conn.execute(f"select count(*) from {VIEW}").fetchone() == (3,)
