"""A `pg_basebackup -R` hot standby serves the view to the reader: dbt deploys on the primary."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.perf.capacity import late_share
from buildqueue.perf.corpus import grafana_queries
from buildqueue.report import view_query
from support.example import CI_VIEW_SCHEMA, EXPECTED_ROWS, SOURCE_SCHEMA, as_expected
from support.pollers import looping
from support.replica import ReplicaPair, replicated_pair

VIEW = f"{CI_VIEW_SCHEMA}.view_build_queue_status"
READER = "buildqueue_replica_reader"  # on the pair's own throw-away servers


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    """The pair, the example loaded and the view deployed (for READER) on the primary."""
    with replicated_pair() as running:
        with running.primary.connect() as admin:
            admin.execute(f"create role {READER} login")
        project = DbtProject(running.primary, target="ci", schema=CI_VIEW_SCHEMA)
        project.load_fixtures()
        project.invoke("run", vars={"view_reader_roles": [READER]})
        running.wait_for_replay()
        yield running


def rows(db: Database, where: str = "") -> list[dict[str, Any]]:
    with db.connect(user=READER) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"select * from {VIEW} {where} order by system_name").fetchall()  # type: ignore[arg-type]


def test_the_reader_sees_the_primarys_rows_on_the_standby(pair: ReplicaPair) -> None:
    standby = rows(pair.standby)
    assert standby == rows(pair.primary)  # every column, stored times included
    assert as_expected(standby) == EXPECTED_ROWS
    with pair.standby.connect() as conn:
        assert conn.execute("select status from pg_stat_wal_receiver").fetchone() == ("streaming",)


def test_a_reservation_on_the_primary_reaches_the_standby(pair: ReplicaPair) -> None:
    table = f"{SOURCE_SCHEMA}.build_reservations"
    with pair.primary.connect() as worker:
        worker.execute(f"insert into {table} (worker_id, derivation_id) values ('replica', 2)")
    try:
        pair.wait_for_replay()
        (after,) = rows(pair.standby, "where system_name = 'server-b'")
        assert (after["active_workers"], after["worker_ids"]) == (1, ["replica"])
    finally:
        with pair.primary.connect() as worker:
            worker.execute(f"delete from {table} where worker_id = 'replica'")
        pair.wait_for_replay()


def test_the_standby_is_read_only_and_dbt_refuses_it(pair: ReplicaPair) -> None:
    with pair.standby.connect() as admin, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        admin.execute(f"delete from {SOURCE_SCHEMA}.build_reservations")
    standby = DbtProject(pair.standby, target="ci", schema=CI_VIEW_SCHEMA)
    outcome = standby.invoke("run", vars={"view_reader_roles": [READER]}, check=False)
    message = "is a read-only standby (a streaming replica): dbt run cannot write"
    assert not outcome.success and message in outcome.describe()


def test_redeploys_on_the_primary_never_fail_a_standby_query(pair: ReplicaPair) -> None:
    """Each rebuild's lock and new definition replay on the standby while the reader polls."""
    project = DbtProject(pair.primary, target="ci", schema=CI_VIEW_SCHEMA)
    query = view_query(CI_VIEW_SCHEMA)
    with looping(
        lambda: pair.standby.connect(user=READER), lambda conn: len(conn.execute(query).fetchall())
    ) as seen:
        for _ in range(3):
            project.invoke("run", vars={"view_reader_roles": [READER]})
            pair.wait_for_replay()
    assert seen and set(seen) == {len(EXPECTED_ROWS)}, [row for row in seen if isinstance(row, str)]


def test_pgbench_runs_the_dashboard_on_the_standby_as_the_reader(pair: ReplicaPair) -> None:
    """What `./run load` runs on a primary: every panel and rule query."""
    reader = replace(pair.standby, user=READER)
    assert late_share(reader, CI_VIEW_SCHEMA, grafana_queries(), 1, 0.1, seconds=1, limit=60) == 0
