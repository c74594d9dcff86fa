"""Session fixtures: one database, one dbt build over the example fixtures.

The database backend is chosen by $BUILDQUEUE_DATABASE (embedded by default); see
buildqueue.database. dbt runs in-process through buildqueue.dbt, once per session.
Everything the session creates on the server is uniquely named and dropped, and the run
fails if the server's schemas or roles differ at the end (pytests/support/scratch.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from support.scratch import (
    EXAMPLE_SCHEMA,
    VIEW_SCHEMA,
    drop_schemas,
    nothing_left_behind,
    scratch_name,
)

from buildqueue.database import Database, open_database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.docs import DocsArtifacts, generate_docs

pytest_plugins = ["support.scratch_fixtures"]


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    db = open_database()
    try:
        with nothing_left_behind(db):
            yield db
    finally:
        db.stop()


@pytest.fixture(scope="session")
def project(database: Database) -> Iterator[DbtProject]:
    yield DbtProject(
        database, target="ci", schema=VIEW_SCHEMA, vars={"source_schema": EXAMPLE_SCHEMA}
    )
    drop_schemas(database, [VIEW_SCHEMA, EXAMPLE_SCHEMA])


@pytest.fixture(scope="session")
def build(project: DbtProject) -> DbtOutcome:
    """dbt build (models, data tests, unit tests) over freshly loaded fixtures."""
    return project.build(fixtures=True, check=False)


@pytest.fixture
def conn(database: Database, fresh_example: DbtProject) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the built example (search_path: the view's schema)."""
    with database.connect(options=f"-c search_path={VIEW_SCHEMA}") as connection:
        yield connection


@pytest.fixture(scope="session")
def docs(project: DbtProject, build: DbtOutcome) -> DocsArtifacts:
    """`dbt docs generate` over the built example: target/ with index.html, manifest, catalog."""
    return generate_docs(project)


READER_ROLE = scratch_name("reader")


@pytest.fixture(scope="session")
def reader_role(database: Database) -> Iterator[str]:
    """A login role with no privileges of its own, like a read-only Grafana user."""
    with database.connect() as connection:
        if _role_exists(connection):  # left over from an interrupted run
            connection.execute(f"drop owned by {READER_ROLE}")
            connection.execute(f"drop role {READER_ROLE}")
        connection.execute(f"create role {READER_ROLE} login")
    yield READER_ROLE
    with database.connect() as connection:
        connection.execute(f"drop owned by {READER_ROLE}")
        connection.execute(f"drop role {READER_ROLE}")


def _role_exists(connection: psycopg.Connection) -> bool:
    return bool(
        connection.execute("select 1 from pg_roles where rolname = %s", [READER_ROLE]).fetchone()
    )
