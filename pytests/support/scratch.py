"""Scratch schemas and roles: uniquely named for one test session, dropped when done.

The suite may run against a user's own server (``BUILDQUEUE_DATABASE=postgresql://...``),
so it must never take a fixed name there nor leave anything behind (dbt-core's
``unique_schema`` fixture and pytest-postgresql's janitor do the same). Every schema and
role a test creates is named ``bqt_<8 hex>_<purpose>``: one random token per session,
so two sessions on one server never meet, and whatever a session made is recognisable
by its prefix. `ScratchSchemas` hands names out and drops them at teardown;
`nothing_left_behind` compares the server's schemas and roles at the end of the session
with those at its start and fails the run naming anything left behind.

``BUILDQUEUE_SCRATCH_TOKEN`` (8 hex digits) fixes the token, so a test that runs part of
the suite in a subprocess knows which names that run will take.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import psycopg
from psycopg import sql

from buildqueue.database import Database

TOKEN_ENV = "BUILDQUEUE_SCRATCH_TOKEN"
NAME_LIMIT = 63
"""PostgreSQL's identifier limit (NAMEDATALEN - 1): longer names are silently truncated."""
_TOKEN = re.compile(r"[0-9a-f]{8}\Z")
_PURPOSE = re.compile(r"[a-z][a-z0-9_]*\Z")


def session_prefix() -> str:
    """``bqt_<token>``: the token from $BUILDQUEUE_SCRATCH_TOKEN, else 8 random hex digits."""
    token = os.environ.get(TOKEN_ENV) or secrets.token_hex(4)
    if not _TOKEN.match(token):
        raise ValueError(
            f"{TOKEN_ENV}={token!r} is not 8 lowercase hex digits. "
            f"Fix: unset it (a random token is drawn) or set it to e.g. 0badc0de."
        )
    return f"bqt_{token}"


PREFIX = session_prefix()
"""This session's prefix; every scratch schema and role starts with it and an underscore."""


def scratch_name(purpose: str) -> str:
    """The session's name for ``purpose`` (``bqt_<token>_<purpose>``): the same every call,
    so a module can use it in constants and its fixture can claim it for dropping."""
    name = f"{PREFIX}_{purpose}"
    if not _PURPOSE.match(purpose) or len(name) > NAME_LIMIT:
        raise ValueError(
            f"Scratch purpose {purpose!r} does not make a plain PostgreSQL name of at most "
            f"{NAME_LIMIT} characters ({name!r}). Fix: use lowercase letters, digits and "
            f"underscores, at most {NAME_LIMIT - len(PREFIX) - 1} characters."
        )
    return name


EXAMPLE_SCHEMA = scratch_name("example")
"""The session's shared example: the fixture tables (var source_schema of the session's
dbt project). Read-only for tests; a test that writes gets its own copy (example_copy)."""
VIEW_SCHEMA = scratch_name("ci")
"""The session's view over the shared example (the `ci` target's schema)."""


def _schemas(database: Database) -> frozenset[str]:
    """Every schema but PostgreSQL's temporary ones (pg_temp_N, pg_toast_temp_N): the
    server makes those for a backend's first temporary table and keeps them for reuse."""
    query = "select nspname from pg_namespace where nspname !~ '^pg_(toast_)?temp_[0-9]+$'"
    with database.connect() as conn:
        return frozenset(name for (name,) in conn.execute(query))


def _roles(database: Database) -> frozenset[str]:
    with database.connect() as conn:
        return frozenset(name for (name,) in conn.execute("select rolname from pg_roles"))


def create_login_role(conn: psycopg.Connection, name: str, database: Database) -> None:
    """``create role NAME login``, with the session user's password when it has one: on a
    server that asks every role for a password (scram-sha-256) the role can then log in
    with `database.connect(user=NAME)`, which sends that password. Dropped with the role."""
    password = (
        sql.SQL(" password {}").format(database.password) if database.password else sql.SQL("")
    )
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)) + password)


def drop_schemas(database: Database, names: list[str]) -> None:
    """Drop each schema and everything in it (no error when it does not exist)."""
    with database.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


def drop_roles(database: Database, names: list[str]) -> None:
    """Drop each role with its privileges and objects in this database, if it exists."""
    with database.connect() as conn:
        for name in names:
            if conn.execute("select 1 from pg_roles where rolname = %s", [name]).fetchone():
                conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


class ScratchSchemas:
    """Names scratch schemas for one test or module and drops them at `drop_all`.

    Calling it with a purpose returns `scratch_name(purpose)`; it does not create the
    schema (dbt and the fleet loader create the schemas they write to). A name can be
    held by one owner at a time, so two fixtures never share (and drop) one schema.
    """

    _held: ClassVar[set[str]] = set()  # one registry for the session

    def __init__(self, database: Database) -> None:
        self.database = database
        self.names: list[str] = []

    def __call__(self, purpose: str) -> str:
        name = scratch_name(purpose)
        if name in ScratchSchemas._held:
            raise ValueError(
                f"Scratch schema {name} is already held by another fixture. "
                "Fix: give this one a purpose of its own."
            )
        ScratchSchemas._held.add(name)
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        """Drop every schema named here (and release the names)."""
        try:
            drop_schemas(self.database, self.names)
        finally:
            ScratchSchemas._held.difference_update(self.names)
            self.names.clear()


class LeftBehind(AssertionError):
    """The run changed the server's list of schemas or roles; the message names them."""


@dataclass(frozen=True)
class Inventory:
    """The schemas and roles a server has at one moment."""

    schemas: frozenset[str]
    roles: frozenset[str]

    @classmethod
    def of(cls, database: Database) -> Inventory:
        return cls(schemas=_schemas(database), roles=_roles(database))

    def changes_since(self, before: Inventory) -> list[str]:
        """One line per schema or role added or removed since ``before``; [] if none."""
        lines = []
        for kind, now, then in (
            ("schema", self.schemas, before.schemas),
            ("role", self.roles, before.roles),
        ):
            lines += [f"{kind} {name} (left behind)" for name in sorted(now - then)]
            lines += [f"{kind} {name} (dropped, it existed before)" for name in sorted(then - now)]
        return lines


def _ours(names: frozenset[str]) -> list[str]:
    return sorted(name for name in names if name.startswith(PREFIX + "_"))


@contextmanager
def nothing_left_behind(database: Database) -> Iterator[None]:
    """Fail (`LeftBehind`) unless the server's schemas and roles end as they started.

    Scratch objects of this session still there at the end are dropped first (so the
    server is clean either way) and reported too: the fixture that made them did not.
    """
    before = Inventory.of(database)
    yield
    after = Inventory.of(database)
    stray_schemas = _ours(after.schemas - before.schemas)
    stray_roles = _ours(after.roles - before.roles)
    drop_schemas(database, stray_schemas)
    drop_roles(database, stray_roles)
    problems = [
        f"{kind} {name} (not dropped by its fixture; dropped now)"
        for kind, names in (("schema", stray_schemas), ("role", stray_roles))
        for name in names
    ]
    problems += Inventory.of(database).changes_since(before)
    if problems:
        raise LeftBehind(
            f"The test run changed what {database.describe()} holds: "
            + "; ".join(problems)
            + ". Fix: name every schema or role a test creates with a scratch fixture "
            "(pytests/support/scratch.py: scratch_schema, module_scratch_schema, "
            "scratch_name) so it is dropped at teardown; drop leftovers by hand "
            "(drop schema NAME cascade; drop owned by NAME; drop role NAME)."
        )
