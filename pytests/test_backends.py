"""The other ways in: an existing server via PG* variables or a DSN (with its password)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from buildqueue.database import Database, from_dsn, open_database
from buildqueue.dbt import DbtProject
from buildqueue.report import fetch_rows
from support.example import EXPECTED_ROWS
from support.password_server import as_dsn, start_password_server
from support.scratch import ScratchSchemas, create_login_role, drop_roles, scratch_name


def _same_server(db: Database) -> str:
    with db.connect() as conn:
        return conn.execute("select system_identifier::text from pg_control_system()").fetchone()[0]


def test_env_backend_reaches_the_server_named_by_pg_variables(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in database.env().items():
        monkeypatch.setenv(key, value)
    db = open_database("env")
    assert db.backend == "env"
    assert _same_server(db) == _same_server(database)


def test_a_dsn_is_read_with_its_password_and_port() -> None:
    db = from_dsn("postgresql://me:p%40ss@db.example:6543/cf?sslmode=require")
    assert (db.user, db.password, db.host, db.port, db.dbname) == (
        "me", "p@ss", "db.example", 6543, "cf",
    )  # fmt: skip


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A server asking every role for its password (scram-sha-256), as a default install."""
    server = start_password_server(tmp_path_factory.mktemp("scram") / "pgdata")
    yield open_database(as_dsn(server))
    server.stop()


def test_dsn_backend_builds_and_reads_the_view_on_a_password_server(
    password_server: Database,
) -> None:
    """The suite's own pieces on a scram server: dbt with the DSN's password, the reader
    role the suite creates logging in with the password it was given."""
    db, reader = password_server, scratch_name("scram_reader")
    schema = ScratchSchemas(db)
    view, source = schema("dsn_view"), schema("dsn_source")
    over_dsn = DbtProject(db, target="ci", schema=view, vars={"source_schema": source})
    try:
        over_dsn.build(fixtures=True, vars={"view_reader_roles": []})
        with db.connect() as conn:
            create_login_role(conn, reader, db)
            conn.execute(f"grant usage on schema {view} to {reader}")
            conn.execute(f"grant select on {view}.view_build_queue_status to {reader}")
        with db.connect(user=reader) as conn:
            rows = fetch_rows(conn, view)
        assert [row["system_name"] for row in rows] == [row["system_name"] for row in EXPECTED_ROWS]
    finally:
        schema.drop_all()
        drop_roles(db, [reader])
