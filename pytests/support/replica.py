"""A primary and its streaming hot standby on 127.0.0.1 (trusted), as docs/replicas.md does."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from buildqueue.database import LOOPBACK, Database, pg_bin, system_user
from buildqueue.paths import SCRATCH_DIR
from support.cli_process import free_port

TIMEOUT_SECONDS = 120


@dataclass
class ReplicaPair:
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
    """initdb (wal_level = replica), pg_basebackup -R, hot_standby = on; both gone after."""
    run_dir = SCRATCH_DIR / "replicas" / f"run-{os.getpid()}-{secrets.token_hex(4)}"

    def run(binary: str, *args: str, check: bool = True) -> None:
        subprocess.run([pg_bin(binary), *args], check=check, capture_output=True, user=user,
                       timeout=TIMEOUT_SECONDS, cwd=run_dir)  # fmt: skip

    def start(name: str, *settings: str) -> Database:
        port = free_port()
        lines = ["", *settings, f"port = {port}", "unix_socket_directories = ''\n"]
        with (run_dir / name / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(lines))
        run("pg_ctl", "start", "-D", name, "-l", f"{name}.log", "-w")
        cleanup.callback(run, "pg_ctl", "stop", "-D", name, "-m", "fast", "-w", check=False)
        return Database(LOOPBACK, port, "postgres", "", "postgres", f"replica-{name}")

    with ExitStack() as cleanup:
        run_dir.mkdir(parents=True)
        cleanup.callback(shutil.rmtree, run_dir, ignore_errors=True)
        user = system_user(run_dir)  # PostgreSQL refuses root
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
