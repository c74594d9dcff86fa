"""Scratch names (`bqt_<random>_<purpose>`), dropped at teardown; the leftovers guard."""

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from buildqueue.database import Database

PREFIX, NAME_LIMIT = f"bqt_{secrets.token_hex(4)}", 63  # PostgreSQL cuts longer names silently


def scratch_name(purpose: str) -> str:
    """The session's name for ``purpose``, the same every call."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", purpose) or len(f"{PREFIX}_{purpose}") > NAME_LIMIT:
        raise ValueError(f"Scratch purpose {purpose!r}: Fix: use lowercase letters, digits, _.")
    return f"{PREFIX}_{purpose}"


EXAMPLE_SCHEMA = scratch_name("example")  # the session's example tables: read-only for tests
VIEW_SCHEMA = scratch_name("ci")  # the session's view over them


def create_login_role(conn: psycopg.Connection, name: str, database: Database) -> None:
    """A login role with the session user's password, so it logs in on a scram server."""
    statement = sql.SQL("create role {} login").format(sql.Identifier(name))
    if database.password:
        statement += sql.SQL(" password {}").format(database.password)
    conn.execute(statement)


def drop_schemas(database: Database, names: list[str]) -> None:
    with database.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


def drop_roles(database: Database, names: list[str]) -> None:
    drop = sql.SQL("drop owned by {0}; drop role {0}")
    with database.connect() as conn:
        for name in names:
            if conn.execute("select 1 from pg_roles where rolname = %s", [name]).fetchone():
                conn.execute(drop.format(sql.Identifier(name)))


class ScratchSchemas(list):
    """Purpose -> a scratch schema name (created by whoever writes to it), dropped by `drop_all`."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self.database = database

    def __call__(self, purpose: str) -> str:
        self.append(scratch_name(purpose))
        return self[-1]

    def drop_all(self) -> None:
        drop_schemas(self.database, self)
        self.clear()


def inventory(database: Database) -> dict[str, set[str]]:
    """The server's schemas (but pg_temp_N, which the server reuses) and roles."""
    schemas = "select nspname from pg_namespace where nspname !~ '^pg_(toast_)?temp_[0-9]+$'"
    with database.connect() as conn:
        queries = {"schema": schemas, "role": "select rolname from pg_roles"}
        return {kind: {name for (name,) in conn.execute(query)} for kind, query in queries.items()}


@contextmanager
def nothing_left_behind(database: Database) -> Iterator[None]:
    """Fail unless schemas and roles end as they began; this session's strays dropped, named."""
    before = inventory(database)
    yield
    problems: list[str] = []
    for kind, after in inventory(database).items():
        stray = sorted(n for n in after - before[kind] if n.startswith(PREFIX))
        (drop_schemas if kind == "schema" else drop_roles)(database, stray)
        problems += [f"{kind} {n} (not dropped by its fixture; dropped now)" for n in stray]
    for kind, now in inventory(database).items():
        problems += [f"{kind} {n} (left behind)" for n in sorted(now - before[kind])]
        problems += [f"{kind} {n} (dropped, it existed before)" for n in sorted(before[kind] - now)]
    assert not problems, (
        f"The run changed what {database.describe()} holds: {'; '.join(problems)}. Fix: name every"
        " schema or role a test makes with scratch_schema, module_scratch_schema or scratch_name,"
        " so it is dropped at teardown."
    )
