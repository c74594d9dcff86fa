"""Load a synthetic fleet (`buildqueue.perf.fleet`) into a schema in Crystal Forge's shape.

The tables and Crystal Forge's own secondary indexes come from the dbt macro
``create_crystal_forge_tables`` (the one definition of their shape). The indexes are dropped
for the ``COPY`` and built again from their definitions, then ``vacuum (analyze)``, as
autovacuum would on a live database.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

from buildqueue.dbt import DbtProject
from buildqueue.perf.catalog import CRYSTAL_FORGE_TABLES, secondary_indexes
from buildqueue.perf.fleet import COLUMNS, FleetShape, generate


def load_fleet(
    project: DbtProject,
    conn: psycopg.Connection,
    schema: str,
    shape: FleetShape,
    now: datetime | None = None,
) -> dict[str, int]:
    """Replace ``schema`` with the fleet; its row count per table.

    ``conn``: an autocommit connection to ``project``'s database.
    """
    tables = generate(shape, now)
    try:
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
        project.invoke(
            "run-operation", "create_crystal_forge_tables", "--args", f"{{schema: {schema}}}"
        )
        indexes = secondary_indexes(conn, schema)
        for name in indexes:
            conn.execute(sql.SQL("drop index {}").format(sql.Identifier(schema, name)))
        with conn.transaction():
            for table in CRYSTAL_FORGE_TABLES:
                statement = sql.SQL("copy {} ({}) from stdin").format(
                    sql.Identifier(schema, table),
                    sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table])),
                )
                with conn.cursor() as cur, cur.copy(statement) as copy:
                    for chunk in tables.chunks(table):
                        copy.write(chunk)
            for table in ("commits", "derivations", "build_reservations"):
                conn.execute(
                    sql.SQL("select setval(pg_get_serial_sequence({}, 'id'), {})").format(
                        sql.Literal(f"{schema}.{table}"),
                        sql.SQL("greatest((select max(id) from {}), 1)").format(
                            sql.Identifier(schema, table)
                        ),
                    )
                )
        for definition in indexes.values():
            conn.execute(definition)  # type: ignore[arg-type]
        for table in CRYSTAL_FORGE_TABLES:
            conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(schema, table)))
        return dict(tables.rows)
    finally:
        tables.close()
