"""Session fixtures: one database, one dbt build over the example fixtures.

The database backend is chosen by $BUILDQUEUE_DATABASE (embedded by default); see
buildqueue.database. dbt runs in-process through buildqueue.dbt, once per session.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from buildqueue.database import Database, open_database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.docs import DocsArtifacts, generate_docs
from buildqueue.example import CI_VIEW_SCHEMA as VIEW_SCHEMA


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    db = open_database()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def project(database: Database) -> DbtProject:
    return DbtProject(database, target="ci", schema=VIEW_SCHEMA)


@pytest.fixture(scope="session")
def build(project: DbtProject) -> DbtOutcome:
    """dbt build (models, data tests, unit tests) over freshly loaded fixtures."""
    return project.build(fixtures=True, check=False)


@pytest.fixture
def conn(database: Database, build: DbtOutcome) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the built example (search_path: the view's schema)."""
    with database.connect(options=f"-c search_path={VIEW_SCHEMA}") as connection:
        yield connection


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run tests marked `last` after all others, keeping the order within each group.

    The deploy rehearsal takes minutes; the session's example has heartbeats relative to
    when it was loaded (15 s ago for server-a), so checks of it that ran after the
    rehearsal would see a stale worker.
    """
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
