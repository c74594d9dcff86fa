"""`dbt run-operation create_source_indexes`: dry run, creation, concurrently, idempotence.

The view's plans rely on the spec's indexes, the covering package index and the
(derivation_type, status_id) statistic with its statistics target (docs/performance.md).
The operation must print its DDL without touching anything on a dry run, create exactly
what is missing (also with `concurrently`, which cannot run in a transaction), and change
nothing when run again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from support.scratch import ScratchSchemas, scratch_name

from buildqueue.cli import run_in_subprocess
from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.fleet import drop_secondary_indexes, secondary_indexes

SCHEMA = scratch_name("source_indexes")
INDEXES = [
    "idx_build_reservations_heartbeat_at",
    "idx_build_reservations_nixos_derivation_id",
    "idx_derivation_dependencies_derivation_id",
    "idx_derivations_package_status",
    "idx_derivations_type_status",
]
STATISTIC = "stx_derivations_type_status"
STATISTICS_TARGET = 1000
AUTOCOMMIT_ENV = "BUILDQUEUE_AUTOCOMMIT"


@pytest.fixture
def bare_tables(
    database: Database, scratch_schema: ScratchSchemas
) -> Iterator[tuple[DbtProject, psycopg.Connection]]:
    """The Crystal Forge tables with their keys but none of the operation's objects."""
    project = DbtProject(database, target="ci")
    schema = scratch_schema("source_indexes")
    with database.connect() as conn:
        project.invoke(
            "run-operation", "create_crystal_forge_tables", "--args", f"{{schema: {schema}}}"
        )
        drop_secondary_indexes(conn, schema)
        conn.execute(f"drop statistics {schema}.{STATISTIC}")
        yield project, conn


def statistics_targets(conn: psycopg.Connection) -> dict[str, int | None]:
    rows = conn.execute(
        "select stxname, stxstattarget from pg_statistic_ext where stxnamespace = %s::regnamespace",
        [SCHEMA],
    ).fetchall()
    return dict(rows)


def operation(database: Database, args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`buildqueue dbt run-operation create_source_indexes --args ARGS`: exit code, output."""
    completed = run_in_subprocess(
        "dbt",
        "--database",
        database.conninfo(),
        "--target",
        "ci",
        "run-operation",
        "create_source_indexes",
        "--args",
        args,
        env=env,
    )
    return completed.returncode, completed.stdout + completed.stderr


def test_dry_run_prints_the_ddl_and_changes_nothing(
    database: Database, bare_tables: tuple[DbtProject, psycopg.Connection]
) -> None:
    _, conn = bare_tables
    code, output = operation(database, f"{{schema: {SCHEMA}, concurrently: true, dry_run: true}}")
    assert code == 0, output
    for name in INDEXES:
        assert f'create index concurrently if not exists "{name}"' in output, output
    assert f'create statistics if not exists "{SCHEMA}"."{STATISTIC}"' in output
    assert f"set statistics {STATISTICS_TARGET};" in output
    assert secondary_indexes(conn, SCHEMA) == []
    assert statistics_targets(conn) == {}


@pytest.mark.parametrize("concurrently", [False, True])
def test_creates_what_is_missing_and_is_idempotent(
    bare_tables: tuple[DbtProject, psycopg.Connection],
    concurrently: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, conn = bare_tables
    if concurrently:  # as the docs say to run it: autocommit on for this command only
        monkeypatch.setenv(AUTOCOMMIT_ENV, "true")
    args = f"{{schema: {SCHEMA}, concurrently: {str(concurrently).lower()}}}"
    conn.execute(f"create index idx_derivations_type_status on {SCHEMA}.derivations (id)")
    for _ in range(2):  # the second run finds everything there and changes nothing
        project.invoke("run-operation", "create_source_indexes", "--args", args)
        assert secondary_indexes(conn, SCHEMA) == INDEXES
        assert statistics_targets(conn) == {STATISTIC: STATISTICS_TARGET}
    # an index that already exists under the name is kept as it is, not replaced
    definition = conn.execute(
        "select indexdef from pg_indexes where schemaname = %s and indexname = %s",
        [SCHEMA, "idx_derivations_type_status"],
    ).fetchone()
    assert definition is not None and definition[0].endswith("(id)")


def test_concurrently_without_autocommit_says_how_to_fix(
    database: Database, bare_tables: tuple[DbtProject, psycopg.Connection]
) -> None:
    """Autocommit is off by default (builds need their transaction): the fix, not PG's error."""
    code, output = operation(
        database,
        f"{{schema: {SCHEMA}, concurrently: true}}",
        env={k: v for k, v in os.environ.items() if k != AUTOCOMMIT_ENV},
    )
    assert code == 1, output
    assert "concurrently needs a connection in autocommit mode" in output, output
    assert "run this one command with BUILDQUEUE_AUTOCOMMIT=true" in output, output
    assert "cannot run inside a transaction block" not in output, output
    _, conn = bare_tables
    assert secondary_indexes(conn, SCHEMA) == []
