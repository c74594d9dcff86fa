"""Crystal Forge upgrades: unread columns migrate under the view; read ones after the README's
`dbt run-operation pause_view_for_upgrade`, then `dbt build`; grants and views on ours survive."""

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.report import fetch_rows
from support import crystal_forge as cf
from support.example import EXPECTED_ROWS, SYSTEM_NAMES, as_expected
from support.relations import run_dbt
from support.scratch import ScratchSchemas, drop_roles, scratch_name

PAUSED = "view_build_queue_status is paused for a Crystal Forge upgrade"
READ_COLUMNS = {  # what the staging models read
    "derivations": {"id", "commit_id", "derivation_type", "derivation_name", "status_id"},
    "commits": {"id", "git_commit_hash", "commit_timestamp"},
    "derivation_dependencies": {"derivation_id", "depends_on_id"},
    "build_reservations": {"worker_id", "derivation_id", "nixos_derivation_id", "reserved_at",
                           "heartbeat_at"},
}  # fmt: skip
COLUMNS = """select c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
    from pg_attribute as a join pg_class as c on c.oid = a.attrelid where a.attnum > 0
    and c.relnamespace = 'public'::regnamespace and c.relkind = 'r' and not a.attisdropped"""


def test_an_upgrade_goes_through_and_the_view_comes_back(
    database: Database, build: DbtOutcome
) -> None:
    db = cf.create_scratch_database(database, scratch_name("upgrade"))
    schema, reader = scratch_name("upgrade_view"), scratch_name("upgrade_reader")
    view = f"{schema}.view_build_queue_status"
    vars = {"source_schema": "public", "view_reader_roles": [reader]}  # no status vars
    project = DbtProject(db, target="ci", schema=schema, vars=vars)
    try:
        cf.load_example(db)
        with db.connect() as conn:
            conn.execute(f"create role {reader} login")
            run_dbt(project, "run")
            conn.execute(f"create view {schema}.on_top as select system_name from {view}")
            pinned: dict[str, set[str]] = {}
            columns = conn.execute(COLUMNS).fetchall()
            assert len(columns) == 40  # Crystal Forge's five tables, every column
            for table, column, type_ in columns:  # a migration's retype, to the same type
                try:
                    with conn.transaction():
                        conn.execute(f'alter table {table} alter column "{column}" type {type_}')
                except psycopg.errors.FeatureNotSupported:
                    pinned.setdefault(table, set()).add(column)
            assert pinned == READ_COLUMNS
            assert_the_view_works(db, schema, reader)

            retype = "alter table build_reservations alter column worker_id type varchar(255)"
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                conn.execute(retype)  # the view pins worker_id
            run_dbt(project, "run-operation", "pause_view_for_upgrade")
            for user, query in ((reader, f"select * from {view} where has_stale_workers"),
                                (db.user, f"select * from {schema}.on_top")):  # fmt: skip
                with db.connect(user=user) as paused, pytest.raises(psycopg.Error, match=PAUSED):
                    paused.execute(query)
            conn.execute(retype)
            conn.execute("alter table derivations alter column derivation_name type varchar(255)")
        run_dbt(project, "run")  # after the upgrade, as deployed
        assert_the_view_works(db, schema, reader)
    finally:
        cf.drop_database(database, db)
        drop_roles(database, [reader])


def assert_the_view_works(db: Database, schema: str, reader: str) -> None:
    """The reader reads the example's rows (grants kept); the view on ours is still there."""
    with db.connect() as conn:
        cf.refresh_reservations(conn)  # the example's ages, counted from now
        on_top = conn.execute(f"select system_name from {schema}.on_top").fetchall()
    with db.connect(user=reader) as conn:
        rows = fetch_rows(conn, schema)
    assert as_expected(rows) == EXPECTED_ROWS
    assert [name for (name,) in on_top] == SYSTEM_NAMES


def test_pausing_a_view_that_is_not_there_says_so(
    database: Database, scratch_schema: ScratchSchemas
) -> None:
    project = DbtProject(database, target="ci", schema=scratch_schema("no_view"))
    run_dbt(project, "run-operation", "pause_view_for_upgrade")
    with database.connect() as conn:
        query = "select 1 from pg_namespace where nspname = %s"
        assert conn.execute(query, [project.schema]).fetchone() is None
