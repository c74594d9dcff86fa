"""The view never blocks a Crystal Forge upgrade.

Crystal Forge ships its schema as numbered SQL migrations that know nothing of our view.
A migration that drops or retypes a column the view does not read must go through with
the view deployed; for a column the view does read, the README's path is
`dbt run-operation pause_view_for_upgrade` before the migration and `dbt build` after,
and the view's grants and the views built on top of it survive both. Both run on a
database in Crystal Forge's own shape and status numbering (pytests/support/crystal_forge.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.report import fetch_rows
from support.crystal_forge import (
    create_scratch_database,
    drop_database,
    load_example,
    refresh_reservations,
)
from support.example import EXPECTED_ROWS
from support.scratch import ScratchSchemas, drop_roles, scratch_name

PAUSED = "view_build_queue_status is paused for a Crystal Forge upgrade"


@dataclass
class Deployment:
    """The view deployed on a database in Crystal Forge's shape (its own, dropped after)."""

    db: Database
    schema: str
    reader: str
    project: DbtProject
    source: str = "public"

    @property
    def view(self) -> str:
        return f"{self.schema}.view_build_queue_status"

    def deploy(self) -> DbtOutcome:
        return self.project.invoke(
            "run", vars={"source_schema": self.source, "view_reader_roles": [self.reader]}
        )


@pytest.fixture
def deployment(database: Database, build: DbtOutcome) -> Iterator[Deployment]:
    """Crystal Forge's five tables (every column, index and status number it has) holding
    the example, the view over them granted to a fresh reader role, and a view someone
    built on top of ours."""
    crystal_forge = create_scratch_database(database, scratch_name("upgrade"))
    schema = scratch_name("upgrade_view")
    found = Deployment(
        db=crystal_forge,
        schema=schema,
        reader=scratch_name("upgrade_reader"),
        project=DbtProject(crystal_forge, target="ci", schema=schema),
    )
    try:
        load_example(crystal_forge)
        with crystal_forge.connect() as conn:
            conn.execute(f"create role {found.reader} login")
        found.deploy()
        with crystal_forge.connect() as conn:
            conn.execute(
                f"create view {found.schema}.queue_on_top as"
                f" select system_name, status from {found.view}"
            )
        yield found
    finally:
        drop_database(database, crystal_forge)
        drop_roles(database, [found.reader])


def _assert_view_works(deployment: Deployment) -> None:
    """The reader still reads the view (grants kept), with the example's rows, and the
    view built on top of ours is still there."""
    with deployment.db.connect() as conn:
        refresh_reservations(conn)  # the example's ages, counted from now
    with deployment.db.connect(user=deployment.reader) as reader:
        rows = fetch_rows(reader, deployment.schema)
    assert [{key: row[key] for key in EXPECTED_ROWS[0]} for row in rows] == EXPECTED_ROWS
    with deployment.db.connect() as conn:
        on_top = conn.execute(
            f"select system_name from {deployment.schema}.queue_on_top"
        ).fetchall()
    assert [name for (name,) in on_top] == [row["system_name"] for row in EXPECTED_ROWS]


READ_COLUMNS = {
    "derivations": {"id", "commit_id", "derivation_type", "derivation_name", "status_id"},
    "commits": {"id", "git_commit_hash", "commit_timestamp"},
    "derivation_dependencies": {"derivation_id", "depends_on_id"},
    "build_reservations": {
        "worker_id",
        "derivation_id",
        "nixos_derivation_id",
        "reserved_at",
        "heartbeat_at",
    },
}
"""The columns the staging models read; derivation_statuses is read only when dbt compiles."""


def test_the_view_pins_only_the_columns_it_reads(deployment: Deployment) -> None:
    """Every column of Crystal Forge's five tables is retyped (to its own type), as a
    migration would: PostgreSQL refuses exactly the columns a view uses, and those must be
    the columns the staging models read; every other retype goes through."""
    pinned: dict[str, set[str]] = {}
    with deployment.db.connect() as conn:
        columns = conn.execute(
            """
            select c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
            from pg_attribute as a
            join pg_class as c on c.oid = a.attrelid
            where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
                and c.relname = any(%s) and a.attnum > 0 and not a.attisdropped
            """,
            [[*READ_COLUMNS, "derivation_statuses"]],
        ).fetchall()
        assert len(columns) == 40  # the five tables as Crystal Forge has them
        for table, column, type_ in columns:
            try:
                with conn.transaction():
                    conn.execute(f'alter table public.{table} alter column "{column}" type {type_}')
            except psycopg.errors.FeatureNotSupported:
                pinned.setdefault(table, set()).add(column)
    assert pinned == READ_COLUMNS
    _assert_view_works(deployment)


def test_a_migration_of_a_read_column_goes_through_after_the_pause(
    deployment: Deployment,
) -> None:
    retype = "alter table public.build_reservations alter column worker_id type varchar(255)"
    with deployment.db.connect() as conn, pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute(retype)  # the view pins worker_id: PostgreSQL refuses

    deployment.project.invoke("run-operation", "pause_view_for_upgrade")
    with (
        deployment.db.connect(user=deployment.reader) as reader,
        pytest.raises(psycopg.Error, match=PAUSED),
    ):
        reader.execute(f"select count(*) from {deployment.view} where has_stale_workers")
    with deployment.db.connect() as conn:
        with pytest.raises(psycopg.Error, match=PAUSED):
            conn.execute(f"select * from {deployment.schema}.queue_on_top")
        conn.execute(retype)
        conn.execute(
            "alter table public.derivations alter column derivation_name type varchar(255)"
        )

    deployment.deploy()  # `dbt build` after the upgrade puts the query back in place
    _assert_view_works(deployment)


def test_pausing_a_view_that_is_not_there_says_so(
    database: Database, scratch_schema: ScratchSchemas
) -> None:
    project = DbtProject(database, target="ci", schema=scratch_schema("no_view"))
    outcome = project.invoke("run-operation", "pause_view_for_upgrade")
    assert outcome.success
    with database.connect() as conn:
        assert not conn.execute(
            "select 1 from pg_namespace where nspname = %s", [project.schema]
        ).fetchone()
