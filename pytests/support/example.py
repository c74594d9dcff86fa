"""The spec's example as data: what view_build_queue_status must return over the fixtures.

The rows come from the seed expected_view_build_queue_status, which the dbt test
tests/assert_example_rows_match_spec.sql reads too: one file for both. Times that are
relative to load time are given there as ages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from buildqueue.perf.catalog import CRYSTAL_FORGE_TABLES
from support.seed_csv import read_seed

if TYPE_CHECKING:
    from buildqueue.database import Database
    from buildqueue.dbt import DbtOutcome, DbtProject

SOURCE_SCHEMA = "crystal_forge_example"
"""Where the fixtures load (var source_schema's default)."""

CI_VIEW_SCHEMA = "buildqueue_ci"
"""Where the test suite builds the view (target ci)."""

EXPECTED_SEED = "expected_view_build_queue_status"
"""The one home of the example's expected rows: seeds/example/<this>.csv, which the dbt test
tests/assert_example_rows_match_spec.sql reads too."""

_SEED_ROWS = read_seed("example", EXPECTED_SEED)

AGE_COLUMNS = {
    "earliest_reservation": "earliest_reservation_age_seconds",
    "latest_heartbeat": "latest_heartbeat_age_seconds",
}
"""The view's times that depend on when the example was loaded -> the seed column holding
each as an age in seconds at load time."""

EXPECTED_ROWS: list[dict[str, object]] = [
    {name: value for name, value in row.items() if name not in AGE_COLUMNS.values()}
    for row in _SEED_ROWS
]
"""What view_build_queue_status returns over the fixtures, in its order, without the times
that depend on when the example was loaded."""

EXPECTED_AGES: dict[str, dict[str, int | None]] = {
    column: {row["system_name"]: row[age] for row in _SEED_ROWS}
    for column, age in AGE_COLUMNS.items()
}
EARLIEST_RESERVATION_AGE_SECONDS = EXPECTED_AGES["earliest_reservation"]
LATEST_HEARTBEAT_AGE_SECONDS = EXPECTED_AGES["latest_heartbeat"]
"""Per system, how old its times were when the example was loaded (None: the view's is NULL)."""


def copy_example(conn: psycopg.Connection, schema: str, source: str = SOURCE_SCHEMA) -> None:
    """Copy the example loaded in ``source`` into a new ``schema`` (same columns, keys and
    indexes), as fresh as a new load (`refill_example`)."""
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    for table in CRYSTAL_FORGE_TABLES:
        target, loaded = sql.Identifier(schema, table), sql.Identifier(source, table)
        conn.execute(sql.SQL("create table {} (like {} including all)").format(target, loaded))
    refill_example(conn, schema, source)


def refill_example(conn: psycopg.Connection, schema: str, source: str = SOURCE_SCHEMA) -> None:
    """Replace the rows of a copy made by `copy_example` with the example's in ``source``,
    its reservation times shifted so their ages are again those of the example at load
    time (the freshest heartbeat 15 seconds old), however long ago it was loaded."""
    tables = [sql.Identifier(schema, table) for table in CRYSTAL_FORGE_TABLES]
    conn.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(tables)))
    for table in CRYSTAL_FORGE_TABLES:
        target, loaded = sql.Identifier(schema, table), sql.Identifier(source, table)
        conn.execute(sql.SQL("insert into {} select * from {}").format(target, loaded))
    freshest = min(age for age in LATEST_HEARTBEAT_AGE_SECONDS.values() if age is not None)
    conn.execute(
        sql.SQL(
            "update {table}"
            " set reserved_at = reserved_at + shift, heartbeat_at = heartbeat_at + shift"
            " from (select now() - max(heartbeat_at) - make_interval(secs => %s) as shift"
            " from {table}) as ages"
        ).format(table=sql.Identifier(schema, "build_reservations")),
        [freshest],
    )


@dataclass
class ExampleDatabase:
    """The spec's example, loaded and built on one database: where its schemas are."""

    database: Database
    project: DbtProject
    source_schema: str
    outcome: DbtOutcome

    @property
    def view_schema(self) -> str:
        return self.project.view_schema()

    def connect_view(self) -> psycopg.Connection:
        """An autocommit connection reading the view, like Grafana (search_path: its schema)."""
        return self.database.connect(options=f"-c search_path={self.view_schema}")

    def connect_source(self) -> psycopg.Connection:
        """An autocommit connection to the Crystal Forge tables, like a worker."""
        return self.database.connect(options=f"-c search_path={self.source_schema}")
