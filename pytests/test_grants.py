"""Least privilege: a read-only role reads the view and the queue history, nothing else.

The view is built into a scratch schema of its own with var view_reader_roles naming a fresh login
role. That role can select the view (the view's owner reads the sources for it) and the
samples table, but it cannot read or write the source tables, nor alter, replace or drop
the view, nor write the samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from support.example import EXPECTED_ROWS
from support.scratch import EXAMPLE_SCHEMA as SOURCE_SCHEMA
from support.scratch import ScratchSchemas, scratch_name

GRANTS_SCHEMA = scratch_name("grants")
VIEW = f"{GRANTS_SCHEMA}.view_build_queue_status"
SAMPLES = f"{GRANTS_SCHEMA}.build_queue_samples"


@pytest.fixture(scope="module")
def granted(
    project: DbtProject,
    build: DbtOutcome,
    reader_role: str,
    module_scratch_schema: ScratchSchemas,
) -> DbtProject:
    """The view built over the session's example with SELECT granted to the reader role."""
    granted = replace(project, schema=module_scratch_schema("grants"))
    granted.invoke("run", vars={"view_reader_roles": [reader_role]})
    return granted


@pytest.fixture
def as_reader(database: Database, granted: DbtProject, reader_role: str) -> Iterator:
    with database.connect(user=reader_role) as connection:
        yield connection


def test_reader_can_select_the_view(as_reader: psycopg.Connection) -> None:
    names = [row[0] for row in as_reader.execute(f"select system_name from {VIEW}")]
    assert names == [row["system_name"] for row in EXPECTED_ROWS]


def test_reader_can_select_the_queue_history(as_reader: psycopg.Connection) -> None:
    (queued,) = as_reader.execute(f"select max(systems_queued) from {SAMPLES}").fetchone()
    assert queued == len(EXPECTED_ROWS)


@pytest.mark.parametrize(
    "statement",
    [
        "select * from {source}.derivations",
        "select * from {source}.build_reservations",
        "insert into {source}.build_reservations (worker_id, derivation_id) values ('x', 1)",
        "update {source}.derivations set status_id = 6",
        "delete from {source}.commits",
        "alter view {view} rename to hijacked",
        "create or replace view {view} as select 1 as nixos_id",
        "drop view {view}",
        "create table {schema}.intruder (id integer)",
        "delete from {samples}",
        "insert into {samples} (sampled_at) values (now())",
        "truncate {samples}",
    ],
    ids=lambda statement: " ".join(statement.split()[:2]) + " " + statement.split()[-1][:30],
)
def test_reader_cannot_touch_anything_else(as_reader: psycopg.Connection, statement: str) -> None:
    names = {"source": SOURCE_SCHEMA, "view": VIEW, "schema": GRANTS_SCHEMA, "samples": SAMPLES}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_reader.execute(statement.format(**names))


def test_reader_holds_only_select_on_the_view_and_the_history(
    database: Database, granted: DbtProject, reader_role: str
) -> None:
    with database.connect() as admin:
        privileges = admin.execute(
            "select table_name, privilege_type from information_schema.role_table_grants"
            " where grantee = %s and table_schema = %s order by 1",
            [reader_role, GRANTS_SCHEMA],
        ).fetchall()
    assert privileges == [("build_queue_samples", "SELECT"), ("view_build_queue_status", "SELECT")]


def test_reader_cannot_read_sources_even_with_schema_usage(
    database: Database, granted: DbtProject, reader_role: str
) -> None:
    """Table privileges, not just schema visibility, keep the sources closed."""
    with database.connect() as admin:
        admin.execute(f"grant usage on schema {SOURCE_SCHEMA} to {reader_role}")
    try:
        with database.connect(user=reader_role) as reader:
            assert reader.execute(f"select count(*) from {VIEW}").fetchone() == (3,)
            for table in ("derivations", "derivation_dependencies", "build_reservations"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    reader.execute(f"select 1 from {SOURCE_SCHEMA}.{table}")
    finally:
        with database.connect() as admin:
            admin.execute(f"revoke usage on schema {SOURCE_SCHEMA} from {reader_role}")


def test_a_sample_run_without_the_roles_var_keeps_the_grant(
    granted: DbtProject, as_reader: psycopg.Connection
) -> None:
    """A cron job that passes only source_schema must not revoke Grafana's SELECT."""
    granted.invoke("run", "--select", "build_queue_samples")
    assert as_reader.execute(f"select count(*) > 0 from {SAMPLES}").fetchone() == (True,)


def test_grants_survive_a_rebuild(granted: DbtProject, as_reader: psycopg.Connection) -> None:
    granted.invoke("run", vars={"view_reader_roles": [as_reader.info.user]})
    assert as_reader.execute(f"select count(*) from {VIEW}").fetchone() == (3,)


def test_no_reader_roles_means_no_grants(
    database: Database,
    project: DbtProject,
    build: DbtOutcome,
    reader_role: str,
    scratch_schema: ScratchSchemas,
) -> None:
    ungranted = replace(project, schema=scratch_schema("no_grants"))
    ungranted.invoke("run")
    with database.connect() as admin:
        view = f"{ungranted.schema}.view_build_queue_status"
        granted = admin.execute(
            "select has_table_privilege(%s, %s, 'select'), has_schema_privilege(%s, %s, 'usage')",
            [reader_role, view, reader_role, ungranted.schema],
        ).fetchone()
    assert granted == (False, False)


def test_invalid_role_name_is_refused(granted: DbtProject) -> None:
    hostile = 'grafana"; drop role grafana; --'  # a quote would end dbt's quoted name
    outcome = granted.invoke("run", vars={"view_reader_roles": [hostile]}, check=False)
    assert not outcome.success
    assert "Invalid name in var 'view_reader_roles'" in outcome.describe()
