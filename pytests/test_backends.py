"""The other ways in: an existing server via PG* variables or a DSN, and testcontainers."""

from __future__ import annotations

import pytest
from support.scratch import ScratchSchemas

from buildqueue.database import BackendUnavailable, Database, open_database, start_testcontainers
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.example import EXPECTED_ROWS
from buildqueue.report import fetch_rows


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


def test_dsn_backend_builds_and_reads_the_view(
    database: Database, project: DbtProject, build: DbtOutcome, scratch_schema: ScratchSchemas
) -> None:
    dsn = (
        f"postgresql://{database.user}@/{database.dbname}?host={database.host}&port={database.port}"
    )
    db = open_database(dsn)
    assert db.backend == "dsn"
    over_dsn = DbtProject(db, target="ci", schema=scratch_schema("dsn"), vars=project.vars)
    over_dsn.invoke("run", "--select", "view_build_queue_status")
    with db.connect() as conn:
        rows = fetch_rows(conn, over_dsn.view_schema())
    assert [row["system_name"] for row in rows] == [row["system_name"] for row in EXPECTED_ROWS]


def test_testcontainers_backend() -> None:
    try:
        db = start_testcontainers()
    except BackendUnavailable as error:
        pytest.skip(f"testcontainers PostgreSQL unavailable here: {error}")
    try:
        project = DbtProject(db, target="ci", schema="buildqueue_tc")
        project.build(fixtures=True)
        with db.connect() as conn:
            rows = fetch_rows(conn, "buildqueue_tc")
        assert [row["system_name"] for row in rows] == [row["system_name"] for row in EXPECTED_ROWS]
    finally:
        db.stop()
