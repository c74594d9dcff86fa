"""The view over the spec's example, and dbt's own verdict on the build.

Each test runs on the default database (embedded PostgreSQL 18 unless $BUILDQUEUE_DATABASE
says otherwise) and on PostgreSQL 15 in a container (the `example` fixture).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from buildqueue.report import VIEW_COLUMNS
from support.example import (
    EARLIEST_RESERVATION_AGE_SECONDS,
    EXPECTED_ROWS,
    LATEST_HEARTBEAT_AGE_SECONDS,
    ExampleDatabase,
)


def _rows(conn: psycopg.Connection, sql: str = "select * from view_build_queue_status") -> list:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_dbt_build_passes(example: ExampleDatabase) -> None:
    build = example.outcome
    assert build.success, build.describe()
    assert any(status == "pass" for status in build.node_statuses.values()), build.describe()


def test_view_has_the_spec_columns_in_order(example_conn: psycopg.Connection) -> None:
    with example_conn.cursor() as cur:
        cur.execute("select * from view_build_queue_status limit 0")
        assert tuple(col.name for col in cur.description) == VIEW_COLUMNS


def test_example_rows(example_conn: psycopg.Connection) -> None:
    rows = _rows(example_conn)
    assert [{k: row[k] for k in EXPECTED_ROWS[0]} for row in rows] == EXPECTED_ROWS


def test_example_times_are_relative_to_load(example_conn: psycopg.Connection) -> None:
    rows = {row["system_name"]: row for row in _rows(example_conn)}
    now = _rows(example_conn, "select now() as now")[0]["now"]

    def age(value: datetime | None) -> float | None:
        return None if value is None else (now - value).total_seconds()

    for name, expected in LATEST_HEARTBEAT_AGE_SECONDS.items():
        got = age(rows[name]["latest_heartbeat"])
        assert (got is None) == (expected is None), name
        if expected is not None:
            assert expected <= got < expected + 3600, (name, got)
    for name, expected in EARLIEST_RESERVATION_AGE_SECONDS.items():
        got = age(rows[name]["earliest_reservation"])
        assert (got is None) == (expected is None), name
        if expected is not None:
            assert expected <= got < expected + 3600, (name, got)
    assert rows["server-c"]["latest_heartbeat"] < now - timedelta(minutes=5)
