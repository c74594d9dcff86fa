"""Session fixtures: one database, one dbt build over the example fixtures.

The database backend is chosen by $BUILDQUEUE_DATABASE (embedded by default; see
buildqueue.database), or by ``--password-server``: a throw-away server on 127.0.0.1 that
requires scram-sha-256 for every role, reached through its DSN as a user's own server
would be (``./run test --password-server pytests/test_example.py ...``). dbt runs
in-process through buildqueue.dbt. Everything the session creates on the server is
uniquely named and dropped, and the run fails if the server's schemas or roles differ at
the end (pytests/support/scratch.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from psycopg import sql

from buildqueue.database import (
    BACKEND_ENV,
    BackendUnavailable,
    Database,
    open_database,
    start_testcontainers,
)
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.sampler import SAMPLE_MODEL
from support.docs_site import DocsArtifacts, generate_docs
from support.example import ExampleDatabase, copy_example, refill_example
from support.password_server import as_dsn, start_password_server
from support.scratch import (
    EXAMPLE_SCHEMA,
    VIEW_SCHEMA,
    ScratchSchemas,
    create_login_role,
    drop_schemas,
    nothing_left_behind,
    scratch_name,
)

pytest_plugins = ["support.scratch_fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--password-server",
        action="store_true",
        help="run against a throw-away scram-sha-256 server, through BUILDQUEUE_DATABASE=<DSN>",
    )


@pytest.fixture(scope="session")
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    server = None
    if request.config.getoption("--password-server"):
        server = start_password_server(tmp_path_factory.mktemp("password") / "pgdata")
        os.environ[BACKEND_ENV] = as_dsn(server)  # the CLI subprocesses inherit it
    db = open_database()
    try:
        with nothing_left_behind(db):
            yield db
    finally:
        db.stop()
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def project(database: Database) -> Iterator[DbtProject]:
    yield DbtProject(
        database, target="ci", schema=VIEW_SCHEMA, vars={"source_schema": EXAMPLE_SCHEMA}
    )
    drop_schemas(database, [VIEW_SCHEMA, EXAMPLE_SCHEMA])


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
def conn(database: Database, fresh_example: DbtProject) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the built example (search_path: the view's schema)."""
    with database.connect(options=f"-c search_path={VIEW_SCHEMA}") as connection:
        yield connection


@pytest.fixture
def samples_schema(scratch_schema: ScratchSchemas) -> str:
    """A scratch schema of this test's for the view and the queue history."""
    return scratch_schema("samples")


@pytest.fixture
def samples_project(project: DbtProject, build: DbtOutcome, samples_schema: str) -> DbtProject:
    """The view and the queue history (one sample) built in a scratch schema over the example."""
    samples = replace(project, schema=samples_schema)
    samples.invoke("run", "--select", "view_build_queue_status", SAMPLE_MODEL)
    return samples


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
        create_login_role(connection, READER_ROLE, database)
    yield READER_ROLE
    with database.connect() as connection:
        connection.execute(f"drop owned by {READER_ROLE}")
        connection.execute(f"drop role {READER_ROLE}")


def _role_exists(connection: psycopg.Connection) -> bool:
    return bool(
        connection.execute("select 1 from pg_roles where rolname = %s", [READER_ROLE]).fetchone()
    )


# --- PostgreSQL 15 in a container (testcontainers), next to the default database ---------


@pytest.fixture(scope="session")
def container_database() -> Iterator[Database]:
    """A `Database` in a throw-away PostgreSQL 15 container, reached on 127.0.0.1.

    Skips with the reason where no Docker engine answers; .ci/run provisions Docker and
    the image (.ci/provision-postgres-image) before `./run test`, so there it runs. The
    container is removed at the end of the session. `.connect()` and `.env()` work from
    this host like any other `Database`.
    """
    try:
        db = start_testcontainers()
    except BackendUnavailable as error:
        pytest.skip(f"no PostgreSQL container here: {error}")
    yield db
    db.stop()


@pytest.fixture(scope="session", params=["default", "container"])
def example(request: pytest.FixtureRequest) -> Iterator[ExampleDatabase]:
    """The built example on the default database and on the PostgreSQL 15 container.

    Tests using it run once per database. On the container the example goes to its own
    uniquely named schemas (view and source), dropped at the end of the session.
    """
    if request.param == "default":
        project = request.getfixturevalue("project")
        outcome = request.getfixturevalue("build")
        # Reload: the example's heartbeats are relative to load time and the session's
        # build may be minutes old by now (server-a's 15 s heartbeat would turn stale).
        project.load_fixtures()
        yield ExampleDatabase(project.database, project, EXAMPLE_SCHEMA, outcome)
        return
    db = request.getfixturevalue("container_database")
    source_schema = scratch_name("container_example")
    project = DbtProject(
        db, target="ci", schema=scratch_name("container_ci"), vars={"source_schema": source_schema}
    )
    try:
        yield ExampleDatabase(db, project, source_schema, project.build(fixtures=True))
    finally:
        with db.connect() as connection:
            for schema in (project.view_schema(), source_schema):
                connection.execute(f"drop schema if exists {schema} cascade")


@pytest.fixture
def example_conn(example: ExampleDatabase) -> Iterator[psycopg.Connection]:
    """A connection reading the example's view, on each database in turn."""
    with example.connect_view() as connection:
        yield connection


@pytest.fixture(scope="module")
def example_copy_on_each_database(example: ExampleDatabase) -> Iterator[ExampleDatabase]:
    """A module's own copy of the example next to the shared one, on each database in turn,
    with the view built over it: for tests that write to the source tables."""
    schemas = ScratchSchemas(example.database)
    schema = schemas("live" if example.source_schema == EXAMPLE_SCHEMA else "live_container")
    try:
        with example.database.connect() as connection:
            copy_example(connection, schema, source=example.source_schema)
        project = DbtProject(
            example.database, target="ci", schema=schema, vars={"source_schema": schema}
        )
        outcome = project.invoke("run", "--select", "view_build_queue_status")
        yield ExampleDatabase(example.database, project, schema, outcome)
    finally:
        schemas.drop_all()


@pytest.fixture
def writable_example(
    example: ExampleDatabase, example_copy_on_each_database: ExampleDatabase
) -> ExampleDatabase:
    """The module's copy of the example (`example_copy_on_each_database`), its rows as the
    example's before each test: a test writes to it, and no shared data is repaired."""
    copy = example_copy_on_each_database
    with example.database.connect() as connection:
        refill_example(connection, copy.source_schema, source=example.source_schema)
    return copy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run tests marked `last` after all others, keeping the order within each group.

    The deploy rehearsal takes minutes; the session's example has heartbeats relative to
    when it was loaded (15 s ago for server-a), so checks of it that ran after the
    rehearsal would see a stale worker.
    """
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
