"""The view over the spec's example, and dbt's own verdict on the build."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from buildqueue.dbt import DbtOutcome
from buildqueue.example import (
    EARLIEST_RESERVATION_AGE_SECONDS,
    EXPECTED_ROWS,
    LATEST_HEARTBEAT_AGE_SECONDS,
)
from buildqueue.report import VIEW_COLUMNS


def _rows(conn: psycopg.Connection, sql: str = "select * from view_build_queue_status") -> list:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_dbt_build_passes(build: DbtOutcome) -> None:
    assert build.success, build.describe()
    assert any(status == "pass" for status in build.node_statuses.values()), build.describe()


def test_view_has_the_spec_columns_in_order(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute("select * from view_build_queue_status limit 0")
        assert tuple(col.name for col in cur.description) == VIEW_COLUMNS


def test_example_rows(conn: psycopg.Connection) -> None:
    rows = _rows(conn)
    assert [{k: row[k] for k in EXPECTED_ROWS[0]} for row in rows] == EXPECTED_ROWS


def test_example_times_are_relative_to_load(conn: psycopg.Connection) -> None:
    rows = {row["system_name"]: row for row in _rows(conn)}
    now = _rows(conn, "select now() as now")[0]["now"]

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
