"""The spec's example: the view's rows over the fixtures (a seed), copies for tests that write."""

from dataclasses import dataclass

import psycopg
from psycopg import sql

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.perf.catalog import CRYSTAL_FORGE_TABLES
from support.seed_csv import read_seed

SOURCE_SCHEMA = "crystal_forge_example"  # var source_schema's default
CI_VIEW_SCHEMA = "buildqueue_ci"  # target ci's schema
_ROWS = read_seed("example", "expected_view_build_queue_status")
EXPECTED_ROWS = [{k: v for k, v in row.items() if not k.endswith("_age_seconds")} for row in _ROWS]
LATEST_HEARTBEAT_AGE_SECONDS = {r["system_name"]: r["latest_heartbeat_age_seconds"] for r in _ROWS}
SYSTEM_NAMES = [row["system_name"] for row in EXPECTED_ROWS]  # in the view's order


def as_expected(rows: list[dict]) -> list[dict]:
    """The view's rows cut to the columns EXPECTED_ROWS holds (their ages left out)."""
    return [{key: row[key] for key in EXPECTED_ROWS[0]} for row in rows]


def copy_example(conn: psycopg.Connection, schema: str, source: str) -> None:
    """The example in ``source`` copied to a new ``schema`` (keys, indexes), fresh (refilled)."""
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    for table in CRYSTAL_FORGE_TABLES:
        like = sql.SQL("create table {} (like {} including all)")
        conn.execute(like.format(sql.Identifier(schema, table), sql.Identifier(source, table)))
    refill_example(conn, schema, source)


def refill_example(conn: psycopg.Connection, schema: str, source: str) -> None:
    """A copy's rows replaced by the example's, reservation times shifted to their load ages."""
    tables = [sql.Identifier(schema, table) for table in CRYSTAL_FORGE_TABLES]
    conn.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(tables)))
    for table in CRYSTAL_FORGE_TABLES:
        copy = sql.SQL("insert into {} select * from {}")
        conn.execute(copy.format(sql.Identifier(schema, table), sql.Identifier(source, table)))
    freshest = min(age for age in LATEST_HEARTBEAT_AGE_SECONDS.values() if age is not None)
    shift = sql.SQL("update {0} set reserved_at = reserved_at + shift, heartbeat_at ="
                    " heartbeat_at + shift from (select now() - max(heartbeat_at)"
                    " - make_interval(secs => %s) as shift from {0}) s")  # fmt: skip
    conn.execute(shift.format(sql.Identifier(schema, "build_reservations")), [freshest])


@dataclass
class ExampleDatabase:
    """The example loaded and built on one database: where its schemas are."""

    database: Database
    project: DbtProject
    source_schema: str
    outcome: DbtOutcome

    def connect_view(self) -> psycopg.Connection:  # like Grafana: search_path the view's schema
        return self.database.connect(options=f"-c search_path={self.project.view_schema()}")

    def connect_source(self) -> psycopg.Connection:  # like a worker
        return self.database.connect(options=f"-c search_path={self.source_schema}")
