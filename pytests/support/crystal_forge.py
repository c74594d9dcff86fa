"""A database in Crystal Forge's shape holding the spec's example, for the deploy rehearsal.

The example fixtures (seeds/example) are loaded by dbt into a schema of the test
database, in tables shaped like Crystal Forge's but without its foreign keys, extra
indexes or status numbering. A deploy has to work on the real thing, so this builds it:
a database of its own on the test server (`create_scratch_database`), Crystal Forge's
five tables in its `public` schema exactly as Crystal Forge defines them, with its
indexes, foreign keys and status catalogue (crystal_forge_schema.sql), and the example's
rows in them (`load_example`). Statuses are translated by name from the fixtures'
catalogue (the spec's numbering) to Crystal Forge's; reservation ages become timestamps.
`indexes` reads a schema's indexes as the planner sees them (the rehearsal's and the index
operation's tests compare them).
"""

from __future__ import annotations

import csv
import dataclasses
import secrets
from pathlib import Path

import psycopg
from psycopg import sql

from buildqueue.database import Database
from buildqueue.paths import PROJECT_DIR
from buildqueue.perf.catalog import CRYSTAL_FORGE_TABLES

SCHEMA_SQL = Path(__file__).with_name("crystal_forge_schema.sql")
FIXTURES_DIR = PROJECT_DIR / "seeds" / "example"
SOURCE_SCHEMA = "public"
TABLES = CRYSTAL_FORGE_TABLES

STATUS_RENAMES = {"scheduled": "dry-run-complete"}
"""Fixture status names that Crystal Forge does not have, and what stands for them there.

Crystal Forge queues a system for building in dry-run-complete; the spec's `scheduled`
is the same stage under a name Crystal Forge never had.
"""


@dataclasses.dataclass(frozen=True)
class Index:
    """An index as the planner sees it: table, key columns, INCLUDE columns, predicate,
    whether it is valid, and its access method."""

    table: str
    keys: tuple[str, ...]
    include: tuple[str, ...]
    predicate: str | None
    valid: bool
    method: str = "btree"


def indexes(conn: psycopg.Connection, schema: str) -> dict[str, Index]:
    """Every index in ``schema`` by name. Columns are as pg_get_indexdef prints them
    (expressions included), in index order; the predicate as pg_get_expr prints it."""
    rows = conn.execute(
        """
        select
            index_class.relname,
            table_class.relname,
            array(
                select pg_get_indexdef(pg_index.indexrelid, position, true)
                from generate_series(1, pg_index.indnatts) as position
                order by position
            ),
            pg_index.indnkeyatts,
            pg_get_expr(pg_index.indpred, pg_index.indrelid),
            pg_index.indisvalid,
            pg_am.amname
        from pg_index
        join pg_class as index_class on index_class.oid = pg_index.indexrelid
        join pg_class as table_class on table_class.oid = pg_index.indrelid
        join pg_am on pg_am.oid = index_class.relam
        where index_class.relnamespace = %s::regnamespace
        """,
        [schema],
    ).fetchall()
    return {
        name: Index(table, tuple(columns[:keys]), tuple(columns[keys:]), predicate, valid, method)
        for name, table, columns, keys, predicate, valid, method in rows
    }


def create_scratch_database(server: Database, prefix: str) -> Database:
    """Create an empty database named ``<prefix>_<random hex>`` on ``server``; return it."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with server.connect() as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return dataclasses.replace(server, dbname=name, _stop=None)


def drop_database(server: Database, database: Database) -> None:
    """Drop ``database`` from ``server`` even if sessions are still connected to it."""
    with server.connect() as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(database.dbname)
            )
        )


def load_example(database: Database) -> None:
    """Create Crystal Forge's tables in ``database`` and fill them with the example."""
    with database.connect() as conn, conn.transaction():
        conn.execute(SCHEMA_SQL.read_text())
        translate = status_translation(conn)
        commits = _fixture("commits")
        _insert(conn, "commits", commits, ["id", "flake_id", "git_commit_hash", "commit_timestamp"])
        derivations = _fixture("derivations")
        for row in derivations:
            row["status_id"] = str(translate[int(row["status_id"])])
        _insert(
            conn,
            "derivations",
            derivations,
            [
                "id",
                "commit_id",
                "derivation_type",
                "derivation_name",
                "derivation_path",
                "status_id",
                "attempt_count",
                "pname",
                "version",
            ],
        )
        dependencies = _fixture("derivation_dependencies")
        _insert(conn, "derivation_dependencies", dependencies, ["derivation_id", "depends_on_id"])
        conn.cursor().executemany(
            "insert into public.build_reservations (id, worker_id, derivation_id,"
            " nixos_derivation_id) values (%s, %s, %s, %s)",
            [
                [
                    int(row["id"]),
                    row["worker_id"],
                    int(row["derivation_id"]),
                    int(row["nixos_derivation_id"]),
                ]
                for row in _fixture("build_reservations")
            ],
        )
        refresh_reservations(conn)
        for table in ("commits", "derivations", "build_reservations"):
            conn.execute(
                sql.SQL("select setval(pg_get_serial_sequence({}, 'id'), max(id)) from {}").format(
                    sql.Literal(f"public.{table}"), sql.Identifier(SOURCE_SCHEMA, table)
                )
            )
        for table in TABLES:
            conn.execute(sql.SQL("analyze {}").format(sql.Identifier(SOURCE_SCHEMA, table)))


def refresh_reservations(conn: psycopg.Connection) -> None:
    """Set each reservation's times to the example's ages, counted from now.

    The example's ages (a heartbeat 15 s ago, 10 minutes ago) are what make a worker
    fresh or stale; a rehearsal takes minutes, so the checks set them again before
    reading the view, as live workers keep heart-beating.
    """
    conn.cursor().executemany(
        "update public.build_reservations set reserved_at = now() - make_interval(secs => %s),"
        " heartbeat_at = now() - make_interval(secs => %s) where id = %s",
        [
            [int(row["reserved_seconds_ago"]), int(row["heartbeat_seconds_ago"]), int(row["id"])]
            for row in _fixture("build_reservations")
        ],
    )


def status_translation(conn: psycopg.Connection) -> dict[int, int]:
    """Fixture status id -> Crystal Forge status id, matched by name (`STATUS_RENAMES` first).

    Only the statuses the fixture derivations use must translate; a fixture status with no
    counterpart is an error naming it, so a new fixture status cannot slip through as a
    wrong number.
    """
    crystal_forge = dict(
        conn.execute(f"select name, id from {SOURCE_SCHEMA}.derivation_statuses").fetchall()
    )
    fixture = {int(row["id"]): row["name"] for row in _fixture("derivation_statuses")}
    used = {int(row["status_id"]) for row in _fixture("derivations")}
    translation: dict[int, int] = {}
    for fixture_id in sorted(used):
        name = STATUS_RENAMES.get(fixture[fixture_id], fixture[fixture_id])
        if name not in crystal_forge:
            raise LookupError(
                f"Fixture status {fixture_id} '{fixture[fixture_id]}' has no Crystal Forge "
                f"counterpart (Crystal Forge has {', '.join(sorted(crystal_forge))}). Fix: map "
                "it in STATUS_RENAMES in pytests/support/crystal_forge.py."
            )
        translation[fixture_id] = crystal_forge[name]
    return translation


def _fixture(table: str) -> list[dict[str, str]]:
    """The rows of seeds/example/fixture_<table>.csv, as strings."""
    with (FIXTURES_DIR / f"fixture_{table}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _insert(
    conn: psycopg.Connection, table: str, rows: list[dict[str, str]], columns: list[str]
) -> None:
    """Insert ``rows`` into public.<table>; empty CSV fields become NULL."""
    statement = sql.SQL("insert into {} ({}) values ({})").format(
        sql.Identifier(SOURCE_SCHEMA, table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    conn.cursor().executemany(statement, [[row[c] or None for c in columns] for row in rows])
