"""The view over the spec's example, and dbt's own verdict on the build.

Each test runs on the default database (embedded PostgreSQL 18 unless $BUILDQUEUE_DATABASE
says otherwise) and on PostgreSQL 15 in a container (the `example` fixture).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg.rows import dict_row

from buildqueue.report import VIEW_COLUMNS
from support.example import EXPECTED_AGES, EXPECTED_ROWS, ExampleDatabase


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
    """Each time plus its age in the expected rows gives one instant: when the example was
    loaded (the fixtures stamp every reservation with one now()), which is not to come."""
    rows = {row["system_name"]: row for row in _rows(example_conn)}
    now = _rows(example_conn, "select now() as now")[0]["now"]
    loaded_at = set()
    for column, ages in EXPECTED_AGES.items():
        for name, age in ages.items():
            value = rows[name][column]
            assert (value is None) == (age is None), (name, column, value)
            if age is not None:
                loaded_at.add(value + timedelta(seconds=age))
    assert len(loaded_at) == 1, loaded_at
    assert loaded_at.pop() <= now
    assert rows["server-c"]["latest_heartbeat"] < now - timedelta(minutes=5)
