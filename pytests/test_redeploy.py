"""Zero-downtime redeploys: dashboards keep getting full answers while dbt rebuilds.

A Grafana-like poller (its own connection, one short transaction per query, as the
read-only reader role so the grants are proven to survive every swap) queries the view
while `dbt run` rebuilds the project 3 times; then again with workers writing to the
source tables at the same time (its own copy of the example: the shared one stays as
loaded). Every query must succeed and return all three systems.

The project's view materialization (macros/materializations/view.sql) creates the new
query under a temporary name first, then redefines the live view in place with `create or
replace view` while its columns stay the same (or, when they change, swaps the new view
in by renaming), applies the grants and commits, all in one transaction; a concurrent
query waits for that lock and then sees either the old or the new definition, never an
error (docs/production.md, section 4).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from support.example import EXPECTED_ROWS
from support.pollers import Pollers
from support.scratch import scratch_name

REBUILDS = 3
POLL_INTERVAL_SECONDS = 0.02
SOURCE_SCHEMA = scratch_name("redeploy")  # the writing test's own copy of the example
SYSTEMS = frozenset(row["system_name"] for row in EXPECTED_ROWS)


def _insert_and_delete_reservation(conn: psycopg.Connection) -> None:
    """A worker claims a pending package of server-a and finishes it."""
    with conn.transaction():
        conn.execute(
            "insert into build_reservations (worker_id, derivation_id, nixos_derivation_id)"
            " values ('writer-worker', 110, 1)"
        )
    conn.execute("delete from build_reservations where worker_id = 'writer-worker'")


def _heartbeat(conn: psycopg.Connection) -> None:
    conn.execute(
        "update build_reservations set heartbeat_at = now()"
        " where worker_id in ('worker-0', 'worker-1')"
    )


def _toggle_package_status(conn: psycopg.Connection) -> None:
    """A package of server-a flips between building and built."""
    conn.execute(
        "update derivations set status_id = case when status_id = 8 then 6 else 8 end"
        " where id = 109"
    )


WRITES: list[Callable[[psycopg.Connection], None]] = [
    _insert_and_delete_reservation,
    _heartbeat,
    _toggle_package_status,
]


@contextmanager
def _writers(database: Database) -> Iterator[list[str]]:
    """One thread per kind of worker write, looping until the block ends; yields errors."""
    stop = threading.Event()
    errors: list[str] = []
    counts = [0] * len(WRITES)

    def loop(index: int) -> None:
        with database.connect(options=f"-c search_path={SOURCE_SCHEMA}") as conn:
            while not stop.is_set():
                try:
                    WRITES[index](conn)
                    counts[index] += 1
                except psycopg.Error as error:
                    errors.append(f"{WRITES[index].__name__}: {error}")
                stop.wait(0.01)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(len(WRITES))]
    for thread in threads:
        thread.start()
    try:
        yield errors
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert all(counts), f"every kind of write ran at least once: {counts}"


def _rebuild_while_polling(database: Database, project: DbtProject, reader_role: str) -> Pollers:
    vars = {"view_reader_roles": [reader_role]}
    project.invoke("run", vars=vars)  # the reader role's grant exists before polling
    with Pollers(
        database,
        project.schema or "",
        interval=POLL_INTERVAL_SECONDS,
        user=reader_role,
        track_names=True,
    ) as pollers:
        for _ in range(REBUILDS):
            outcome = project.invoke("run", vars=vars, check=False)
            assert outcome.success, outcome.describe()
    return pollers


def _assert_no_glitch(pollers: Pollers) -> None:
    stats = pollers.stats
    assert stats.errors == [], f"{len(stats.errors)} failed queries, e.g. {stats.errors[:3]}"
    assert dict(stats.row_counts) == {len(SYSTEMS): stats.queries}, stats.row_counts
    assert set(stats.system_names) == {SYSTEMS}, stats.system_names
    assert stats.queries >= REBUILDS, f"only {stats.queries} queries during {REBUILDS} rebuilds"


@pytest.mark.slow
def test_rebuilds_never_fail_a_dashboard_query(
    database: Database, project: DbtProject, build: DbtOutcome, reader_role: str
) -> None:
    pollers = _rebuild_while_polling(database, project, reader_role)
    _assert_no_glitch(pollers)


@pytest.mark.slow
def test_rebuilds_with_workers_writing(
    database: Database, example_copy: Callable[[str], DbtProject], reader_role: str
) -> None:
    project = example_copy("redeploy")
    with _writers(database) as writer_errors:
        pollers = _rebuild_while_polling(database, project, reader_role)
    assert writer_errors == []
    _assert_no_glitch(pollers)
