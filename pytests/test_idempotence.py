"""Idempotence: repeated, full-refresh and after-failure builds leave the same correct view.

The view is built into a scratch schema over the (already loaded) example; after each step
the schema must hold exactly the view and the queue history table, with the same view
definition, grants and rows. (The history gains at most a sample per build;
pytests/test_queue_samples.py checks it.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from support.example import EXPECTED_ROWS
from support.scratch import ScratchSchemas, scratch_name

SCHEMA = scratch_name("idempotence")


def snapshot(database: Database) -> dict[str, Any]:
    """Everything a redeploy could change: relations, definition, grants, rows."""
    with database.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select relname, relkind from pg_class join pg_namespace"
            " on pg_namespace.oid = relnamespace where nspname = %s order by relname",
            [SCHEMA],
        )
        relations = [(row["relname"], row["relkind"]) for row in cur.fetchall()]
        cur.execute(
            "select pg_get_viewdef(%s::regclass) as definition,"
            " (select relacl::text from pg_class where oid = %s::regclass) as acl",
            [f"{SCHEMA}.view_build_queue_status"] * 2,
        )
        meta = cur.fetchone()
        cur.execute(f"select * from {SCHEMA}.view_build_queue_status")
        rows = cur.fetchall()
    return {"relations": relations, "rows": rows, **(meta or {})}


def assert_correct(state: dict[str, Any]) -> None:
    assert state["relations"] == [
        ("build_queue_samples", "r"),
        ("build_queue_samples_pkey", "i"),
        ("view_build_queue_status", "v"),
    ]
    assert [{k: row[k] for k in EXPECTED_ROWS[0]} for row in state["rows"]] == EXPECTED_ROWS


@pytest.fixture(scope="module")
def idem(fresh_example: DbtProject, module_scratch_schema: ScratchSchemas) -> DbtProject:
    idem = replace(fresh_example, schema=module_scratch_schema("idempotence"))
    idem.invoke("build", "--exclude", "resource_type:seed")
    return idem


@pytest.fixture(scope="module")
def first(database: Database, idem: DbtProject) -> dict[str, Any]:
    state = snapshot(database)
    assert_correct(state)
    return state


def test_build_twice(database: Database, idem: DbtProject, first: dict) -> None:
    idem.invoke("build", "--exclude", "resource_type:seed")
    assert snapshot(database) == first


def test_full_refresh(database: Database, idem: DbtProject, first: dict) -> None:
    idem.invoke("build", "--exclude", "resource_type:seed", "--full-refresh")
    assert snapshot(database) == first


@pytest.mark.parametrize(
    "bad_vars",
    [{"stale_heartbeat_threshold": "soon"}, {"source_schema": "no_such_schema"}],
    ids=["compile-time failure", "on-run-start failure"],
)
def test_build_after_failed_build(
    database: Database, idem: DbtProject, first: dict, bad_vars: dict
) -> None:
    failed = idem.invoke("build", "--exclude", "resource_type:seed", vars=bad_vars, check=False)
    assert not failed.success
    assert snapshot(database) == first, "a failed build must leave the deployed view alone"
    idem.invoke("build", "--exclude", "resource_type:seed")
    assert snapshot(database) == first
