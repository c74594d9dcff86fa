"""Fixtures for tests that own their data (a pytest plugin, loaded by conftest.py).

* `scratch_schema` / `module_scratch_schema`: a factory, purpose -> uniquely named schema
  (`scratch.scratch_name`), dropped with everything in it when the test / module ends.
* `example_copy`: a factory, purpose -> a `DbtProject` over a fresh copy of the spec's
  example in a scratch schema of its own (fixture tables and the view side by side),
  for tests that write to the source tables. The session's shared example is never
  written to, so nothing has to be repaired after a test.
* `fresh_example`: the session's shared example, its times renewed when it got old.
* `writable_example` (conftest.py): a module's own copy of the example on each database
  (default and container), its rows reset to the example's before each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from psycopg import sql

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from support.example import copy_example
from support.scratch import EXAMPLE_SCHEMA, ScratchSchemas

RELOAD_AFTER = timedelta(minutes=2, seconds=30)
"""Half the default stale_heartbeat_threshold (5 minutes): the example's freshest
heartbeat (server-a's, 15 s old when loaded) then stays fresh for a module's tests."""


@pytest.fixture
def scratch_schema(database: Database) -> Iterator[ScratchSchemas]:
    """Purpose -> a scratch schema name of this test's, dropped when the test ends."""
    schemas = ScratchSchemas(database)
    yield schemas
    schemas.drop_all()


@pytest.fixture(scope="module")
def module_scratch_schema(database: Database) -> Iterator[ScratchSchemas]:
    """Purpose -> a scratch schema name of this module's, dropped when the module ends."""
    schemas = ScratchSchemas(database)
    yield schemas
    schemas.drop_all()


def load_example_copy(database: Database, schema: str, view: bool = True) -> DbtProject:
    """A copy of the session's example in ``schema``, as fresh as a new load (its
    reservation times re-aged, `support.example.copy_example`), and (``view``) the view
    built next to it. Returns the project (target ci; schema and source_schema ``schema``).
    """
    with database.connect() as conn:
        copy_example(conn, schema, source=EXAMPLE_SCHEMA)
    project = DbtProject(database, target="ci", schema=schema, vars={"source_schema": schema})
    if view:
        project.invoke("run", "--select", "view_build_queue_status")
    return project


@pytest.fixture
def example_copy(
    database: Database, build: DbtOutcome, scratch_schema: ScratchSchemas
) -> Callable[..., DbtProject]:
    """(purpose, view=True) -> a fresh copy of the example (`load_example_copy`) in a
    scratch schema of the test's own, dropped after the test."""
    return lambda purpose, view=True: load_example_copy(database, scratch_schema(purpose), view)


def freshest_heartbeat_age(database: Database) -> timedelta:
    """How old the newest heartbeat of the session's example is now."""
    query = sql.SQL("select now() - max(heartbeat_at) from {}").format(
        sql.Identifier(EXAMPLE_SCHEMA, "build_reservations")
    )
    with database.connect() as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row and isinstance(row[0], timedelta) else timedelta.max


@pytest.fixture(scope="module")
def fresh_example(database: Database, project: DbtProject, build: DbtOutcome) -> DbtProject:
    """The session's example (built), reloaded at a module's start when loaded too long ago.

    Its reservation times are relative to load time, so it ages: 5 minutes after a load
    server-a's workers would turn stale. Nothing writes to it (writers get an
    `example_copy`), so a reload only renews the times.
    """
    if freshest_heartbeat_age(database) > RELOAD_AFTER:
        project.load_fixtures()
    return project
