"""Databases in Crystal Forge's shape (the dbt macro `crystal_forge_tables_ddl`), with the example:
the fixture seeds' headers are its column names; statuses are translated by name to its ids."""

import csv
import dataclasses
import json
import secrets

import psycopg
from psycopg import sql

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.perf.catalog import CRYSTAL_FORGE_TABLES as TABLES

SOURCE_SCHEMA = "public"
STATUS_RENAMES = {"scheduled": "dry-run-complete"}  # fixture status -> Crystal Forge's name
AGES = ("reserved_seconds_ago", "heartbeat_seconds_ago")  # set by refresh_reservations


def create_scratch_database(server: Database, prefix: str) -> Database:
    """Create an empty database named ``<prefix>_<random hex>`` on ``server``; return it."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with server.connect() as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return dataclasses.replace(server, dbname=name, _stop=None)


def drop_database(server: Database, database: Database) -> None:
    """Drop ``database`` from ``server`` even if sessions are still connected to it."""
    with server.connect() as conn:
        name = sql.Identifier(database.dbname)
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))


def create_tables(database: Database) -> None:
    """Crystal Forge's five tables, exactly, with its status catalogue, in ``public``."""
    args = {"schema": SOURCE_SCHEMA, "foreign_keys": True, "statuses": True}
    DbtProject(database, target="ci").invoke(
        "run-operation", "create_crystal_forge_tables", "--args", json.dumps(args)
    )


def load_example(database: Database) -> None:
    """Create Crystal Forge's tables in ``database`` and fill them with the example."""
    create_tables(database)
    with database.connect() as conn, conn.transaction():
        crystal_forge = dict(conn.execute("select name, id from public.derivation_statuses"))
        names = {row["id"]: row["name"] for row in _fixture("derivation_statuses")}
        for table in TABLES[1:]:  # the status catalogue is Crystal Forge's own
            rows = _fixture(table)
            for row in rows if table == "derivations" else []:
                name = STATUS_RENAMES.get(names[row["status_id"]], names[row["status_id"]])
                row["status_id"] = crystal_forge[name]  # KeyError: a status to rename
            columns = [column for column in rows[0] if column not in AGES]
            comma = sql.SQL(", ").join
            insert = sql.SQL("insert into {} ({}) values ({})").format(
                sql.Identifier(SOURCE_SCHEMA, table), comma(map(sql.Identifier, columns)),
                comma(sql.Placeholder() * len(columns)))  # fmt: skip
            conn.cursor().executemany(insert, [[row[c] or None for c in columns] for row in rows])
        refresh_reservations(conn)
        for table in ("commits", "derivations", "build_reservations"):
            conn.execute(f"select setval(pg_get_serial_sequence('public.{table}', 'id'), max(id))"
                         f" from public.{table}")  # fmt: skip
    with database.connect() as conn:
        conn.execute(f"analyze {', '.join(f'public.{table}' for table in TABLES)}")


def refresh_reservations(conn: psycopg.Connection) -> None:
    """Set each reservation's times to the example's ages, counted from now."""
    rows = _fixture("build_reservations")
    conn.cursor().executemany(
        "update public.build_reservations set reserved_at = now() - make_interval(secs => %s),"
        " heartbeat_at = now() - make_interval(secs => %s) where id = %s",
        [[int(row[AGES[0]]), int(row[AGES[1]]), int(row["id"])] for row in rows],
    )


def _fixture(table: str) -> list[dict[str, str]]:
    """The rows of seeds/example/fixture_<table>.csv, as strings."""
    path = PROJECT_DIR / "seeds" / "example" / f"fixture_{table}.csv"
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
