"""Crystal Forge's tables as the view reads them, and the project's optional index step.

`CRYSTAL_FORGE_TABLES` names the tables once, in the order their foreign keys allow (the
example, the fleets and the Crystal Forge-shaped test databases load them in this order).
`INDEX_STEP` is what the removed `create_source_indexes` operation added on top of Crystal
Forge's own indexes; `./run bench` measures every query shape without and with it.
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

INDEX_STEP = (
    "create index idx_derivations_package_status on {s}.derivations (id) include (status_id)"
    " where derivation_type = 'package'",
    "create statistics {s}.stx_derivations_type_status (mcv, dependencies)"
    " on derivation_type, status_id from {s}.derivations",
    "alter statistics {s}.stx_derivations_type_status set statistics 1000",
)
UNDO_INDEX_STEP = (
    "drop index if exists {s}.idx_derivations_package_status",
    "drop statistics if exists {s}.stx_derivations_type_status",
)


def set_index_step(conn: psycopg.Connection, schema: str, *, on: bool) -> None:
    """Add (``on``) or remove the index step's index and statistic, then analyze."""
    name = sql.Identifier(schema).as_string(conn)
    for statement in UNDO_INDEX_STEP + (INDEX_STEP if on else ()):
        conn.execute(statement.format(s=name))  # type: ignore[arg-type]
    conn.execute(sql.SQL("analyze {}").format(sql.Identifier(schema, "derivations")))


def secondary_indexes(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    """Name -> definition of the indexes in ``schema`` that back no constraint."""
    rows = conn.execute(
        """
        select indexname, indexdef from pg_indexes
        where schemaname = %s
            and not exists (select from pg_constraint where conname = indexname)
        order by 1
        """,
        [schema],
    ).fetchall()
    return dict(rows)
