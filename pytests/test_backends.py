"""The other ways in: an existing server via PG* variables or a DSN, and testcontainers."""

from __future__ import annotations

import os
from typing import Any

import pytest

from buildqueue import docker_engine
from buildqueue.database import (
    LOOPBACK,
    OWNER_LABEL,
    BackendUnavailable,
    Database,
    open_database,
)
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.report import fetch_rows
from support.example import EXPECTED_ROWS
from support.scratch import ScratchSchemas


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
    """BUILDQUEUE_DATABASE=testcontainers: PostgreSQL 15, on 127.0.0.1 only, gone at stop."""
    try:
        db = open_database("testcontainers")
    except BackendUnavailable as error:
        pytest.skip(f"testcontainers PostgreSQL unavailable here: {error}")
    engine = docker_engine.client()
    try:
        container = _container_publishing(engine, db.port)
        bindings = container.attrs["HostConfig"]["PortBindings"]
        assert {b["HostIp"] for port in bindings.values() for b in port} == {LOOPBACK}
        assert (db.backend, db.host, db.env()["PGHOST"]) == ("testcontainers", LOOPBACK, LOOPBACK)
        with db.connect() as conn:
            assert conn.execute("show server_version").fetchone()[0].startswith("15")
    finally:
        db.stop()
    assert not engine.containers.list(all=True, filters={"id": container.id})


def _container_publishing(engine: Any, host_port: int) -> Any:
    """Our container (labelled with this process's pid) whose port is published on host_port."""
    mine = engine.containers.list(filters={"label": f"{OWNER_LABEL}={os.getpid()}"})
    matches = [
        container
        for container in mine
        for bindings in container.ports.values()
        for binding in bindings or []
        if binding["HostPort"] == str(host_port)
    ]
    assert len(matches) == 1, [container.name for container in mine]
    return matches[0]
