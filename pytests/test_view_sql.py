"""`buildqueue view-sql`: the view as one SQL migration, for schema-as-migrations projects.

Applied to the database, the printed statement must give exactly the view `dbt build`
gives: the same definition (ephemeral CTEs inlined the same way), the same rows and the
same grants.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.report import fetch_rows
from buildqueue.view_sql import view_sql
from support.cli_process import run_in_subprocess
from support.scratch import EXAMPLE_SCHEMA, ScratchSchemas
from support.scratch import VIEW_SCHEMA as CI_VIEW_SCHEMA

VIEW = "view_build_queue_status"


@pytest.fixture
def migration_schema(scratch_schema: ScratchSchemas) -> str:
    return scratch_schema("view_sql")


def _definition(database: Database, schema: str) -> tuple[str, list[str]]:
    """The view's query and its options (security_barrier)."""
    with database.connect() as conn:
        return conn.execute(
            "select pg_get_viewdef(oid), coalesce(reloptions, '{}') from pg_class"
            " where oid = %s::regclass",
            [f"{schema}.{VIEW}"],
        ).fetchone()


def test_the_migration_gives_the_view_dbt_builds(
    database: Database,
    project: DbtProject,
    build: DbtOutcome,
    migration_schema: str,
    reader_role: str,
) -> None:
    project = replace(project, schema=migration_schema)
    statement = view_sql(project, {"view_reader_roles": [reader_role]})
    assert statement.startswith("-- view_build_queue_status for dbt target 'ci'")
    assert "create or replace view" in statement and statement.rstrip().endswith("commit;")
    assert f'"{database.dbname}".' not in statement  # runs in whichever database it is applied to
    with database.connect() as conn:
        conn.execute(statement)
    assert _definition(database, migration_schema) == _definition(database, CI_VIEW_SCHEMA)
    assert _definition(database, migration_schema)[1] == ["security_barrier=true"]
    with database.connect(user=reader_role) as reader:
        rows = fetch_rows(reader, migration_schema)
    with database.connect() as conn:
        assert rows == fetch_rows(conn, CI_VIEW_SCHEMA)


def test_view_sql_from_the_command_line(
    database: Database, build: DbtOutcome, migration_schema: str
) -> None:
    env = {**os.environ, "BUILDQUEUE_SCHEMA": migration_schema}
    completed = run_in_subprocess(
        "view-sql",
        "--database",
        database.conninfo(),
        "--target",
        "ci",
        "--vars",
        f"{{stale_heartbeat_threshold: 10 minutes, source_schema: {EXAMPLE_SCHEMA}}}",
        env=env,
    )
    assert completed.returncode == 0, completed.stderr
    assert (
        f'create or replace view "{migration_schema}"."{VIEW}" with (security_barrier) as'
        in completed.stdout
    )
    assert "interval '10 minutes'" in completed.stdout
    with database.connect() as conn:  # printing changes nothing
        assert not conn.execute(
            "select 1 from pg_namespace where nspname = %s", [migration_schema]
        ).fetchone()


def test_view_sql_rejects_vars_that_are_not_a_mapping(database: Database) -> None:
    completed = run_in_subprocess(
        "view-sql", "--database", database.conninfo(), "--vars", "source_schema"
    )
    assert completed.returncode == 1
    assert "--vars must be a YAML mapping" in completed.stderr
    assert "Traceback" not in completed.stderr
