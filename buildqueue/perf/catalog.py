"""Crystal Forge's tables as the view reads them, and what a schema holds of indexes.

`CRYSTAL_FORGE_TABLES` names the tables once, in the order their foreign keys allow (the
example, the fleets and the Crystal Forge-shaped test databases load them in this order).
The index helpers list, drop and describe a schema's secondary indexes, which the fleet
loader drops before a COPY and `create_source_indexes` builds again.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

CRYSTAL_FORGE_TABLES = (
    "derivation_statuses",
    "commits",
    "derivations",
    "derivation_dependencies",
    "build_reservations",
)
"""The Crystal Forge tables the view reads (and the example fills), in the order their
foreign keys allow."""


def secondary_indexes(conn: psycopg.Connection, schema: str) -> list[str]:
    """Indexes in ``schema`` that back no constraint (the source_indexes() ones)."""
    rows = conn.execute(
        """
        select index_class.relname
        from pg_index
        join pg_class as index_class on index_class.oid = pg_index.indexrelid
        join pg_namespace on pg_namespace.oid = index_class.relnamespace
        where pg_namespace.nspname = %s
            and not exists (select from pg_constraint where conindid = pg_index.indexrelid)
        order by 1
        """,
        [schema],
    ).fetchall()
    return [row[0] for row in rows]


def drop_secondary_indexes(conn: psycopg.Connection, schema: str) -> set[str]:
    """Drop the indexes `secondary_indexes` lists; their names."""
    names = secondary_indexes(conn, schema)
    for name in names:
        conn.execute(sql.SQL("drop index {}").format(sql.Identifier(schema, name)))
    return set(names)


def describe_indexes(conn: psycopg.Connection, schema: str) -> list[str]:
    """Every index and extended statistic on the fleet's tables, one line each."""
    indexes = conn.execute(
        "select indexname, indexdef from pg_indexes where schemaname = %s order by 1",
        [schema],
    ).fetchall()
    statistics = conn.execute(
        """
        select stxname, pg_get_statisticsobjdef(oid)
        from pg_statistic_ext
        where stxnamespace = to_regnamespace(%s)
        order by 1
        """,
        [schema],
    ).fetchall()
    lines = [f"{name}: {definition.split(' ON ', 1)[-1]}" for name, definition in indexes]
    lines += [
        f"{name}: statistics {definition.split(' ', 2)[-1]}" for name, definition in statistics
    ]
    return lines
