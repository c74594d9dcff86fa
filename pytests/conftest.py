"""Session fixtures in dbt-core's shape: one server, one build in scratch schemas, the guard."""

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from buildqueue import database as pg
from buildqueue.database import Database
from buildqueue.dbt import VIEW, DbtOutcome, DbtProject
from buildqueue.paths import PROJECT_DIR, SCRATCH_DIR
from buildqueue.sampler import SAMPLE_MODEL
from support import scratch
from support.cli_process import as_dsn, start_password_server
from support.docs_site import DocsArtifacts, generate_docs
from support.example import ExampleDatabase, copy_example, refill_example
from support.scratch import EXAMPLE_SCHEMA, VIEW_SCHEMA, ScratchSchemas, scratch_name


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--password-server", action="store_true", help="a scram server, by DSN")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker per core (up to 4), each with an embedded server of its own; one
    process on any other server, as the leftovers guard reads a whole server."""
    cores = min(len(os.sched_getaffinity(0)), 4)
    alone = pg.backend_choice() != "embedded" or config.option.password_server
    return 0 if alone or cores == 1 else cores


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Modules whole to a worker, but the rehearsal's two servers' halves apart (a minute each)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndRehearsals(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module, _, test = nodeid.partition("::")
            return module + test[test.rfind("[") :] if module.endswith("_rehearsal.py") else module

    return ModulesAndRehearsals(config, log) if config.getvalue("dist") == "loadscope" else None


def pytest_configure(config: pytest.Config) -> None:
    """A worker's dbt artifacts and logs in folders of its own (DBT_* reach the CLI's too)."""
    if worker := os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("DBT_TARGET_PATH", str(PROJECT_DIR / "target" / worker))
        os.environ.setdefault("DBT_LOG_PATH", str(PROJECT_DIR / "logs" / worker))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `first` (minutes long) first: in parallel, the other workers take the rest."""
    items.sort(key=lambda item: item.get_closest_marker("first") is None)


@pytest.fixture(scope="session")
def database(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Database]:
    """$BUILDQUEUE_DATABASE (embedded, a DSN, testcontainers), or --password-server's DSN."""
    server = None
    if request.config.getoption("--password-server"):
        server = start_password_server(tmp_path_factory.mktemp("password") / "pgdata")
        os.environ[pg.BACKEND_ENV] = as_dsn(server)  # the CLI subprocesses inherit it
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0 has the usual folder
    own = worker != "gw0" and pg.backend_choice() == "embedded"
    db = pg.start_embedded(SCRATCH_DIR / f"pgdata-{worker}") if own else pg.open_database()
    try:
        with scratch.nothing_left_behind(db):
            yield db
    finally:
        db.stop()
        server and server.stop()


def _schemas(database: Database) -> Iterator[ScratchSchemas]:
    """Purpose -> a scratch schema name, dropped when the test (module) ends."""
    yield (schemas := ScratchSchemas(database))
    schemas.drop_all()


scratch_schema = pytest.fixture(_schemas, name="scratch_schema")
module_scratch_schema = pytest.fixture(_schemas, scope="module", name="module_scratch_schema")


@pytest.fixture(scope="session")
def scram(tmp_path_factory: Any) -> Iterator[Database]:
    """A scram-sha-256 server by its DSN; its user's password looks like Jinja and is unique."""
    password = "pa {{ss}}'\"%" + secrets.token_hex(8)  # a space: masked whole all the same
    server = start_password_server(tmp_path_factory.mktemp("scram") / "pgdata", password)
    yield pg.open_database(as_dsn(server))
    server.stop()


@pytest.fixture(scope="session")
def project(database: Database) -> Iterator[DbtProject]:
    yield DbtProject(database, "ci", VIEW_SCHEMA, vars={"source_schema": EXAMPLE_SCHEMA})
    scratch.drop_schemas(database, [VIEW_SCHEMA, EXAMPLE_SCHEMA])


@pytest.fixture(scope="session")
def build(database: Database, project: DbtProject) -> DbtOutcome:
    """dbt build (models, data and unit tests) over freshly loaded fixtures."""
    return project.build(fixtures=True, check=False)


@pytest.fixture(scope="module")
def fresh_example(database: Database, project: DbtProject, build: DbtOutcome) -> DbtProject:
    """Reloaded once 2.5 min old (half the stale threshold): no worker turns stale in a module."""
    query = f"select now() - max(heartbeat_at) < '150 s' from {EXAMPLE_SCHEMA}.build_reservations"
    with database.connect() as conn:
        conn.execute(query).fetchone()[0] or project.load_fixtures()
    return project


@pytest.fixture
def conn(database: Database, fresh_example: DbtProject) -> Iterator[psycopg.Connection]:
    with database.connect(options=f"-c search_path={VIEW_SCHEMA}") as connection:
        yield connection


def _copy(database: Database, schema: str, source: str, view: bool = True) -> DbtProject:
    """A fresh copy of the example in ``source`` to ``schema``, with (``view``) its view."""
    with database.connect() as connection:
        copy_example(connection, schema, source=source)
    copy = DbtProject(database, "ci", schema, vars={"source_schema": schema})
    view and copy.invoke("run", "--select", VIEW)
    return copy


@pytest.fixture
def example_copy(database: Database, build: DbtOutcome, scratch_schema: ScratchSchemas) -> Callable:
    """(purpose, view=True) -> a copy of the example of the test's own, for writing to."""
    return lambda purpose, view=True: _copy(database, scratch_schema(purpose), EXAMPLE_SCHEMA, view)


@pytest.fixture
def samples_schema(scratch_schema: ScratchSchemas) -> str:
    return scratch_schema("samples")


@pytest.fixture
def samples_project(project: DbtProject, build: DbtOutcome, samples_schema: str) -> DbtProject:
    """The view and the queue history (one sample) in a scratch schema over the example."""
    samples = replace(project, schema=samples_schema)
    samples.invoke("run", "--select", VIEW, SAMPLE_MODEL)
    return samples


@pytest.fixture(scope="session")
def docs(project: DbtProject, build: DbtOutcome) -> DocsArtifacts:
    return generate_docs(project)


@pytest.fixture(scope="session")
def reader_role(database: Database) -> Iterator[str]:
    """A login role with no privileges of its own, like a read-only Grafana user."""
    with database.connect() as connection:
        scratch.create_login_role(connection, role := scratch_name("reader"), database)
    yield role
    scratch.drop_roles(database, [role])


@pytest.fixture(scope="session")
def container_database() -> Iterator[Database]:
    """PostgreSQL 15 in a testcontainers container; skips, saying why, without Docker."""
    try:
        db = pg.start_testcontainers()
    except pg.BackendUnavailable as error:
        pytest.skip(f"no PostgreSQL container here: {error}")
    yield db
    db.stop()


@pytest.fixture(scope="session", params=["default", "container"])
def example(request: pytest.FixtureRequest) -> Iterator[ExampleDatabase]:
    """The built example on the default database and on the PostgreSQL 15 container."""
    if request.param == "default":
        project, outcome = request.getfixturevalue("project"), request.getfixturevalue("build")
        project.load_fixtures()  # heartbeats are relative to load time: renew them
        yield ExampleDatabase(project.database, project, EXAMPLE_SCHEMA, outcome)
        return
    db, source = request.getfixturevalue("container_database"), scratch_name("container_example")
    project = DbtProject(db, "ci", scratch_name("container_ci"), vars={"source_schema": source})
    try:
        yield ExampleDatabase(db, project, source, project.build(fixtures=True))
    finally:
        scratch.drop_schemas(db, [project.schema, source])


@pytest.fixture
def example_conn(example: ExampleDatabase) -> Iterator[psycopg.Connection]:
    with example.connect_view() as connection:
        yield connection


@pytest.fixture(scope="module")
def example_copy_on_each_database(example: ExampleDatabase) -> Iterator[ExampleDatabase]:
    """A module's own copy of the example, with its view, on each database in turn."""
    schemas, db = ScratchSchemas(example.database), example.database
    schema = schemas("live" if example.source_schema == EXAMPLE_SCHEMA else "live_container")
    try:
        copy = _copy(db, schema, example.source_schema, view=False)
        yield ExampleDatabase(db, copy, schema, copy.invoke("run", "--select", VIEW))
    finally:
        schemas.drop_all()


@pytest.fixture
def writable_example(example: ExampleDatabase, example_copy_on_each_database: Any) -> Any:
    """The module's copy, its rows reset to the example's before each test."""
    copy = example_copy_on_each_database
    with example.database.connect() as connection:
        refill_example(connection, copy.source_schema, example.source_schema)
    return copy
