"""Run the whole suite through the DSN backend and print the server's schemas before and after.

    .venv/bin/python pytests/support/dsn_run.py [PYTEST ARGS]

Starts a PostgreSQL of its own (the embedded one, in a temporary folder, unix socket
only), runs `buildqueue test` against it as a user with their own server would
(``BUILDQUEUE_DATABASE=postgresql://postgres@/postgres?host=<socket dir>&port=<port>``),
then prints how many schemas and roles the server has before and after, and names any
difference. Exit code: the suite's, or 1 when the lists differ.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildqueue.database import BACKEND_ENV, Database, start_embedded
from buildqueue.paths import PROJECT_DIR

# run as a script: make pytests/ importable the way pytest does (it is not a package)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from support.scratch import Inventory


def dsn(db: Database) -> str:
    """The URI a user would export for this server (its socket folder as the host)."""
    return f"postgresql://{db.user}@/{db.dbname}?host={db.host}&port={db.port}"


def main(pytest_args: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="bq-dsn-run-") as folder:
        db = start_embedded(Path(folder) / "pgdata")
        try:
            before = Inventory.of(db)
            print(f"{BACKEND_ENV}={dsn(db)}", flush=True)
            print(f"before: {len(before.schemas)} schemas, {len(before.roles)} roles", flush=True)
            started = time.perf_counter()
            suite = subprocess.run(
                [sys.executable, "-m", "buildqueue", "test", *pytest_args],
                cwd=PROJECT_DIR,
                env={**os.environ, BACKEND_ENV: dsn(db)},
                check=False,
            )
            seconds = time.perf_counter() - started
            after = Inventory.of(db)
            print(f"after:  {len(after.schemas)} schemas, {len(after.roles)} roles")
            changes = after.changes_since(before)
            print("differences: " + ("; ".join(changes) if changes else "none"))
            print(f"suite: exit {suite.returncode} in {seconds:.0f} s")
        finally:
            db.stop()
    return suite.returncode or (1 if changes else 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
