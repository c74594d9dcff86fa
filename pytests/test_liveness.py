"""The view is live: what a worker writes is visible in the next query, with no dbt run.

Each write goes through its own connection and commits, like a worker; the view is read
through another connection, like Grafana. Every test runs on the default database and on
PostgreSQL 15 in a container, each on a copy of the example of this module's own
(`writable_example`): the session's shared example is never written to.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from support.example import ExampleDatabase


@pytest.fixture
def live(writable_example: ExampleDatabase) -> ExampleDatabase:
    """This module's copy of the example, as the example is, on each database in turn."""
    return writable_example


@pytest.fixture
def live_conn(live: ExampleDatabase) -> Iterator[psycopg.Connection]:
    """A connection reading the copy's view, like Grafana."""
    with live.connect_view() as connection:
        yield connection


def _system(conn: psycopg.Connection, name: str) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from view_build_queue_status where system_name = %s", (name,))
        (row,) = cur.fetchall()
        return row


def _write(live: ExampleDatabase, sql: str, *params: object) -> None:
    with live.connect_source() as worker:
        worker.execute(sql, params)


def test_new_reservation_is_visible(live_conn: psycopg.Connection, live: ExampleDatabase) -> None:
    before = _system(live_conn, "server-b")
    assert (before["active_workers"], before["worker_ids"]) == (0, [])
    # a worker claims server-b's system build itself (nixos_derivation_id is NULL)
    _write(live, "insert into build_reservations (worker_id, derivation_id) values ('w9', 2)")
    after = _system(live_conn, "server-b")
    assert (after["active_workers"], after["worker_ids"]) == (1, ["w9"])
    assert after["latest_heartbeat"] is not None
    assert after["has_stale_workers"] is False


def test_heartbeat_update_clears_staleness(
    live_conn: psycopg.Connection, live: ExampleDatabase
) -> None:
    assert _system(live_conn, "server-c")["has_stale_workers"] is True
    _write(
        live,
        "update build_reservations set heartbeat_at = now() where nixos_derivation_id = 3",
    )
    assert _system(live_conn, "server-c")["has_stale_workers"] is False


def test_a_heartbeat_going_quiet_becomes_stale(
    live_conn: psycopg.Connection, live: ExampleDatabase
) -> None:
    assert _system(live_conn, "server-a")["has_stale_workers"] is False
    _write(
        live,
        "update build_reservations set heartbeat_at = now() - interval '6 minutes' "
        "where worker_id = 'worker-1'",
    )
    assert _system(live_conn, "server-a")["has_stale_workers"] is True


def test_finishing_packages_moves_the_system_to_ready(
    live_conn: psycopg.Connection, live: ExampleDatabase
) -> None:
    before = _system(live_conn, "server-a")
    assert (before["completed_packages"], before["status"]) == (7, "building")
    # the two building packages finish and their reservations go away; the pending one too
    _write(live, "update derivations set status_id = 6 where id in (108, 109, 110)")
    _write(live, "delete from build_reservations where nixos_derivation_id = 1")
    after = _system(live_conn, "server-a")
    assert after["completed_packages"] == after["total_packages"] == 10
    assert (after["building_packages"], after["pending_packages"]) == (0, 0)
    assert (after["active_workers"], after["worker_ids"]) == (0, [])
    assert after["status"] == "ready_for_system_build"
    assert after["cache_status"] == "waiting_for_cache_push"
    # pushing the rest to the cache clears the cache wait
    _write(live, "update derivations set status_id = 14 where id between 101 and 110")
    assert _system(live_conn, "server-a")["cache_status"] is None


def test_a_system_leaving_the_queue_disappears(
    live_conn: psycopg.Connection, live: ExampleDatabase
) -> None:
    _write(live, "update derivations set status_id = 14 where id = 2")
    with live_conn.cursor() as cur:
        cur.execute("select system_name from view_build_queue_status")
        assert [name for (name,) in cur.fetchall()] == ["server-a", "server-c"]
