"""Session fixtures: one database, one dbt build over the example fixtures.

The database backend is chosen by $BUILDQUEUE_DATABASE (embedded by default); see
buildqueue.database. dbt runs in-process through buildqueue.dbt, once per session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from buildqueue.database import Database, open_database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.docs import DocsArtifacts, generate_docs
from buildqueue.example import CI_VIEW_SCHEMA as VIEW_SCHEMA
from buildqueue.sampler import SAMPLE_MODEL


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    db = open_database()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def project(database: Database) -> DbtProject:
    return DbtProject(database, target="ci", schema=VIEW_SCHEMA)


@pytest.fixture(scope="session")
def build(database: Database, project: DbtProject) -> DbtOutcome:
    """dbt build (models, data tests, unit tests) over freshly loaded fixtures.

    The queue history of an earlier session is dropped first: `dbt build` keeps it (the
    samples table is never rebuilt), and this session's samples must not depend on what
    ran before.
    """
    with database.connect() as connection:
        connection.execute(
            sql.SQL("drop table if exists {}").format(sql.Identifier(VIEW_SCHEMA, SAMPLE_MODEL))
        )
    return project.build(fixtures=True, check=False)


@pytest.fixture
def conn(database: Database, build: DbtOutcome) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the built example (search_path: the view's schema)."""
    with database.connect(options=f"-c search_path={VIEW_SCHEMA}") as connection:
        yield connection


@pytest.fixture
def scratch_schema(database: Database) -> Iterator[str]:
    """A uniquely named schema for one test's relations, dropped (cascade) afterwards."""
    name = f"buildqueue_scratch_{uuid.uuid4().hex[:12]}"
    yield name
    with database.connect() as connection:
        connection.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


@pytest.fixture
def samples_project(database: Database, build: DbtOutcome, scratch_schema: str) -> DbtProject:
    """The view and the queue history (one sample) built in a scratch schema over the example."""
    project = DbtProject(database, target="ci", schema=scratch_schema)
    project.invoke("run", "--select", "view_build_queue_status", SAMPLE_MODEL)
    return project


@pytest.fixture
def reload_fixtures(project: DbtProject, build: DbtOutcome) -> Iterator[None]:
    """For tests that write to the source tables: the example is reloaded afterwards."""
    yield
    project.load_fixtures()


@pytest.fixture(scope="session")
def docs(project: DbtProject, build: DbtOutcome) -> DocsArtifacts:
    """`dbt docs generate` over the built example: target/ with index.html, manifest, catalog."""
    return generate_docs(project)


READER_ROLE = "buildqueue_test_reader"


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
