"""The view never blocks a Crystal Forge upgrade.

Crystal Forge ships its schema as numbered SQL migrations that know nothing of our view.
A migration that drops or retypes a column the view does not read must go through with
the view deployed; for a column the view does read, the README's path is
`dbt run-operation pause_view_for_upgrade` before the migration and `dbt build` after,
and the view's grants and the views built on top of it survive both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.example import EXPECTED_ROWS, copy_example
from buildqueue.report import fetch_rows
from support.scratch import EXAMPLE_SCHEMA, ScratchSchemas, drop_roles, scratch_name

PAUSED = "view_build_queue_status is paused for a Crystal Forge upgrade"


@dataclass
class Deployment:
    source: str
    schema: str
    reader: str
    project: DbtProject

    @property
    def view(self) -> str:
        return f"{self.schema}.view_build_queue_status"

    def deploy(self) -> DbtOutcome:
        return self.project.invoke(
            "run", vars={"source_schema": self.source, "view_reader_roles": [self.reader]}
        )


@pytest.fixture
def deployment(
    database: Database, project: DbtProject, build: DbtOutcome, scratch_schema: ScratchSchemas
) -> Iterator[Deployment]:
    """A copy of the example (every column Crystal Forge has), the view over it granted to
    a fresh reader role, and a view someone built on top of ours."""
    found = Deployment(
        source=scratch_schema("upgrade_source"),
        schema=scratch_schema("upgrade_view"),
        reader=scratch_name("upgrade_reader"),
        project=replace(project, schema=scratch_name("upgrade_view")),
    )
    with database.connect() as conn:
        copy_example(conn, found.source, source=EXAMPLE_SCHEMA)
        conn.execute(f"create role {found.reader} login")
    try:
        found.deploy()
        with database.connect() as conn:
            conn.execute(
                f"create view {found.schema}.queue_on_top as"
                f" select system_name, status from {found.view}"
            )
        yield found
    finally:
        drop_roles(database, [found.reader])


def _assert_view_works(database: Database, deployment: Deployment) -> None:
    """The reader still reads the view (grants kept), with the example's rows, and the
    view built on top of ours is still there."""
    with database.connect(user=deployment.reader) as reader:
        rows = fetch_rows(reader, deployment.schema)
    assert [{key: row[key] for key in EXPECTED_ROWS[0]} for row in rows] == EXPECTED_ROWS
    with database.connect() as conn:
        on_top = conn.execute(
            f"select system_name from {deployment.schema}.queue_on_top"
        ).fetchall()
    assert [name for (name,) in on_top] == [row["system_name"] for row in EXPECTED_ROWS]


@pytest.mark.parametrize(
    "migration",
    [
        "alter table {s}.derivations alter column attempt_count type bigint",
        "alter table {s}.derivations drop column pname, drop column version",
        "alter table {s}.derivations drop column derivation_path",
        "alter table {s}.commits drop column flake_id",
        "alter table {s}.commits alter column attempt_count type bigint",
        "alter table {s}.build_reservations add column build_host text",
        "alter table {s}.derivation_statuses alter column description type varchar(500)",
    ],
    ids=lambda m: m.split("{s}.")[1][:60],
)
def test_a_migration_of_columns_the_view_does_not_read_goes_through(
    database: Database, deployment: Deployment, migration: str
) -> None:
    with database.connect() as conn:
        conn.execute(migration.format(s=deployment.source))
    _assert_view_works(database, deployment)


def test_a_migration_of_a_read_column_goes_through_after_the_pause(
    database: Database, deployment: Deployment
) -> None:
    retype = (
        f"alter table {deployment.source}.build_reservations"
        " alter column worker_id type varchar(255)"
    )
    with database.connect() as conn, pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute(retype)  # the view pins worker_id: PostgreSQL refuses

    deployment.project.invoke("run-operation", "pause_view_for_upgrade")
    with (
        database.connect(user=deployment.reader) as reader,
        pytest.raises(psycopg.Error, match=PAUSED),
    ):
        reader.execute(f"select count(*) from {deployment.view} where has_stale_workers")
    with database.connect() as conn:
        with pytest.raises(psycopg.Error, match=PAUSED):
            conn.execute(f"select * from {deployment.schema}.queue_on_top")
        conn.execute(retype)
        conn.execute(
            f"alter table {deployment.source}.derivations alter column derivation_name"
            " type varchar(255)"
        )

    deployment.deploy()  # `dbt build` after the upgrade puts the query back in place
    _assert_view_works(database, deployment)


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
