"""Load a synthetic fleet (`buildqueue.perf.fleet`) into a scratch schema of a database.

`load_fleet` writes it through ``COPY`` into a scratch schema whose tables come from the
dbt macro ``create_crystal_forge_tables`` (the one definition of their shape). The
secondary indexes are dropped before the load and built afterwards by the dbt operation
``create_source_indexes``; then ``vacuum analyze`` (as autovacuum would on a live database).
Reservation times are relative to the ``now`` passed in (default: load time).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from buildqueue.dbt import DbtProject
from buildqueue.perf.catalog import CRYSTAL_FORGE_TABLES, drop_secondary_indexes, secondary_indexes
from buildqueue.perf.fleet import COLUMNS, FleetShape, generate


@dataclass
class FleetStats:
    """Row counts and timings of one load."""

    rows: dict[str, int] = field(default_factory=dict)
    generate_seconds: float = 0.0
    load_seconds: float = 0.0
    index_seconds: float = 0.0
    total_seconds: float = 0.0

    def describe(self) -> str:
        counts = ", ".join(f"{table} {count:,}" for table, count in self.rows.items())
        return (
            f"{counts}; generated in {self.generate_seconds:.1f}s, copied in "
            f"{self.load_seconds:.1f}s, indexed+analyzed in {self.index_seconds:.1f}s "
            f"(total {self.total_seconds:.1f}s)"
        )


def load_fleet(
    project: DbtProject,
    conn: psycopg.Connection,
    schema: str,
    shape: FleetShape,
    now: datetime | None = None,
) -> FleetStats:
    """Replace ``schema`` with the fleet: tables from the dbt macro, COPY, indexes, analyze.

    ``conn`` must be an autocommit connection to ``project``'s database.
    """
    stats = FleetStats()
    started = time.perf_counter()
    tables = generate(shape, now)
    stats.rows = dict(tables.rows)
    stats.generate_seconds = time.perf_counter() - started
    try:
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
        project.invoke(
            "run-operation", "create_crystal_forge_tables", "--args", f"{{schema: {schema}}}"
        )
        # the secondary indexes are built after the load: much faster than maintaining them
        dropped = drop_secondary_indexes(conn, schema)
        copied = time.perf_counter()
        with conn.transaction():
            for table in CRYSTAL_FORGE_TABLES:
                _copy(conn, schema, table, tables.chunks(table))
            for table in ("commits", "derivations", "build_reservations"):
                conn.execute(
                    sql.SQL(
                        "select setval(pg_get_serial_sequence({}, 'id'), "
                        "greatest((select max(id) from {}), 1))"
                    ).format(
                        sql.Literal(f"{schema}.{table}"),
                        sql.Identifier(schema, table),
                    )
                )
        stats.load_seconds = time.perf_counter() - copied
    finally:
        tables.close()
    indexed = time.perf_counter()
    project.invoke("run-operation", "create_source_indexes", vars={"source_schema": schema})
    missing = dropped - set(secondary_indexes(conn, schema))
    if missing:
        raise RuntimeError(f"create_source_indexes did not rebuild {sorted(missing)}")
    for table in CRYSTAL_FORGE_TABLES:
        conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(schema, table)))
    stats.index_seconds = time.perf_counter() - indexed
    stats.total_seconds = time.perf_counter() - started
    return stats


def _copy(conn: psycopg.Connection, schema: str, table: str, chunks: Iterator[str]) -> None:
    statement = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for chunk in chunks:
            copy.write(chunk)
