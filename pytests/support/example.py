"""The spec's example as data: what view_build_queue_status must return over the fixtures.

Tests compare against this; the dbt test tests/assert_example_rows_match_spec.sql holds
the same rows in SQL. Times that are relative to load time are given as ages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from buildqueue.perf.catalog import CRYSTAL_FORGE_TABLES

if TYPE_CHECKING:
    from buildqueue.database import Database
    from buildqueue.dbt import DbtOutcome, DbtProject

SOURCE_SCHEMA = "crystal_forge_example"
"""Where the fixtures load (var source_schema's default)."""

CI_VIEW_SCHEMA = "buildqueue_ci"
"""Where the test suite builds the view (target ci)."""

EXPECTED_ROWS: list[dict[str, object]] = [
    {
        "nixos_id": 1,
        "system_name": "server-a",
        "commit_timestamp": datetime(2024, 1, 15, 14, 30, tzinfo=UTC),
        "total_packages": 10,
        "completed_packages": 7,
        "building_packages": 2,
        "pending_packages": 1,
        "cached_packages": 5,
        "active_workers": 2,
        "worker_ids": ["worker-0", "worker-1"],
        "status": "building",
        "cache_status": None,
        "has_stale_workers": False,
    },
    {
        "nixos_id": 2,
        "system_name": "server-b",
        "commit_timestamp": datetime(2024, 1, 15, 10, 0, tzinfo=UTC),
        "total_packages": 3,
        "completed_packages": 3,
        "building_packages": 0,
        "pending_packages": 0,
        "cached_packages": 3,
        "active_workers": 0,
        "worker_ids": [],
        "status": "ready_for_system_build",
        "cache_status": None,
        "has_stale_workers": False,
    },
    {
        "nixos_id": 3,
        "system_name": "server-c",
        "commit_timestamp": datetime(2024, 1, 14, 9, 0, tzinfo=UTC),
        "total_packages": 50,
        "completed_packages": 45,
        "building_packages": 3,
        "pending_packages": 2,
        "cached_packages": 40,
        "active_workers": 3,
        "worker_ids": ["worker-2", "worker-3", "worker-4"],
        "status": "building",
        # The spec's table says waiting_for_cache_push here; its definition ("built but
        # not fully cached") says NULL for a system still building. We follow the definition.
        "cache_status": None,
        "has_stale_workers": True,
    },
]

LATEST_HEARTBEAT_AGE_SECONDS = {"server-a": 15, "server-b": None, "server-c": 600}
EARLIEST_RESERVATION_AGE_SECONDS = {"server-a": 1200, "server-b": None, "server-c": 10800}


def copy_example(conn: psycopg.Connection, schema: str, source: str = SOURCE_SCHEMA) -> None:
    """Copy the example loaded in ``source`` into a new ``schema`` (same columns, keys and
    indexes), with its reservation times shifted so their ages are again those of the
    example at load time (the freshest heartbeat 15 seconds old), however long ago the
    example was loaded."""
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    for table in CRYSTAL_FORGE_TABLES:
        target, loaded = sql.Identifier(schema, table), sql.Identifier(source, table)
        conn.execute(sql.SQL("create table {} (like {} including all)").format(target, loaded))
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
