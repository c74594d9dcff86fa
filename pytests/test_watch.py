"""`buildqueue show --watch N`: a live console view that survives the database and stops on
Ctrl-C with `interrupted.`; what it prints is safe for a terminal and fits its width."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from buildqueue.database import Database, DatabaseError, start_embedded
from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.report import fetch_rows
from support.scratch import VIEW_SCHEMA

HEADER = "view_build_queue_status at "
TOTALS = "3 systems in queue, 5 active workers, 8 packages left to build, 1 with stale workers"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watch(database: Database, *extra: str, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """`buildqueue show`; with ``sigint_ignored``, started the way a shell starts a
    background job (SIGINT ignored, which the child inherits)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BUILDQUEUE_"))}
    env["BUILDQUEUE_SCHEMA"] = VIEW_SCHEMA  # where the session built the example's view
    return subprocess.Popen(
        [sys.executable, "-m", "buildqueue", "show", "--database", database.conninfo(), *extra],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )


def _lines(stream: object) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str | None], headers: int, timeout: float) -> list[str]:
    """Lines of output until ``headers`` refreshes are complete (their totals printed)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while sum(line.startswith(TOTALS) for line in seen) < headers:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            break
        seen.append(line)
    return seen


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "sigint-ignored"])
def test_watch_refreshes_and_ctrl_c_exits_cleanly(
    database: Database, fresh_example: DbtProject, sigint_ignored: bool
) -> None:
    process = _watch(database, "--target", "ci", "--watch", "0.5", sigint_ignored=sigint_ignored)
    try:
        lines = _lines(process.stdout)
        seen = _read_until(lines, headers=2, timeout=60)
        assert sum(line.startswith(HEADER) for line in seen) >= 2, "".join(seen)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = []
    while (line := lines.get(timeout=5)) is not None:
        rest.append(line)
    stderr = process.stderr.read() if process.stderr else ""
    output = "".join(seen + rest)
    assert code == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.rstrip().endswith("interrupted."), stderr[-500:]
    assert "every 0.5s, Ctrl-C to stop" in output
    for system in ("server-a", "server-b", "server-c"):
        assert system in output
    assert "STALE" in output  # server-c's row


def test_watch_rejects_a_non_positive_interval(
    database: Database, fresh_example: DbtProject
) -> None:
    process = _watch(database, "--target", "ci", "--watch", "-1")
    _out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "--watch needs a positive number of seconds" in err
    assert "Traceback" not in err


# --- a server of its own: restarts, terminated and frozen backends, hostile rows ----------

HOSTILE_SCHEMA = "Watch Me"  # case and a space: used double-quoted
FAKE_VIEW = """
create table {view} (
    nixos_id int, system_name text, commit_timestamp timestamptz, git_commit_hash text,
    total_packages int, completed_packages int, building_packages int, pending_packages int,
    cached_packages int, active_workers int, worker_ids text[],
    earliest_reservation timestamptz, latest_heartbeat timestamptz, status text,
    cache_status text, has_stale_workers boolean
)"""
ROWS = """
insert into {view}
select n, case n when 1 then E'evil\\x1b[2J\\x07name' else 'sys-' || n end, now(), 'abc',
    10, 5, 2, 3, 0, 2, array['w-shared', 'w-' || n], now(), now(), 'building', null, false
from generate_series(1, 3) as n
union all
select 4, repeat('x', 5000), now(), 'abc', 10, 5, 2, 3, 0, 300,
    array(select 'worker-' || i from generate_series(1, 300) as i), now(), now(),
    'building', null, false
"""


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    """A throw-away server with a stand-in for the view holding hostile rows."""
    db = start_embedded(tmp_path / "pgdata")
    try:
        view = sql.Identifier(HOSTILE_SCHEMA, "view_build_queue_status")
        with db.connect() as conn:
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(HOSTILE_SCHEMA)))
            conn.execute(sql.SQL(FAKE_VIEW).format(view=view))
            conn.execute(sql.SQL(ROWS).format(view=view))
        yield db, tmp_path / "pgdata"
    finally:
        db.stop()


def _watcher_backend(db: Database) -> int:
    with db.connect() as conn:
        for _ in range(100):
            row = conn.execute(
                "select pid from pg_stat_activity where application_name = 'buildqueue show'"
            ).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.1)
    raise AssertionError("the watcher has no backend")


def _expect(lines: queue.Queue[str | None], text: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(text in line for line in seen):
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, "".join(seen)
        seen.append(line)
    return seen


def test_watch_survives_the_database_and_prints_safely(own_server: tuple[Database, Path]) -> None:
    db, data_dir = own_server
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BUILDQUEUE_"))}
    env |= {"BUILDQUEUE_SCHEMA": HOSTILE_SCHEMA, "BUILDQUEUE_TIMEOUT": "2", "COLUMNS": "100"}
    process = subprocess.Popen(
        [sys.executable, "-m", "buildqueue", "show", "--database", db.conninfo(), "--watch", "0.5"],
        cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = _lines(process.stdout), _lines(process.stderr)
    try:
        seen = _expect(out, "systems in queue", 120)
        assert all(len(line.rstrip("\n")) <= 100 for line in seen), seen
        assert "\x1b" not in "".join(seen) and "\\x1b[2J\\x07" in "".join(seen)
        assert "4 systems in queue, 304 active workers" in seen[-1]  # distinct, not 306

        with db.connect() as conn:  # a terminated backend
            conn.execute("select pg_terminate_backend(%s)", [_watcher_backend(db)])
        _expect(err, "show: connection lost", 30)
        _expect(out, "systems in queue", 30)

        db.stop()  # a restart
        _expect(err, "retrying in", 30)
        restarted = start_embedded(data_dir)
        _expect(out, "systems in queue", 60)

        frozen = _watcher_backend(restarted)  # a server that stops answering
        os.kill(frozen, signal.SIGSTOP)
        try:
            _expect(err, "retrying in", 30)
            _expect(out, "systems in queue", 30)
        finally:
            os.kill(frozen, signal.SIGCONT)

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert "interrupted." in "".join(_expect(err, "interrupted.", 10))
    finally:
        process.kill()
        process.wait()
        if "restarted" in locals():
            restarted.stop()


def test_a_paused_view_says_to_rebuild_with_the_deploys_target_and_vars(
    own_server: tuple[Database, Path],
) -> None:
    db, _ = own_server
    message = (
        "view_build_queue_status is paused for a Crystal Forge upgrade. "
        "Fix: run dbt build once the upgrade is done."
    )
    with db.connect() as conn:
        conn.execute("create schema paused")
        conn.execute(
            "create function paused.stop() returns int language plpgsql as "
            f"$$ begin raise exception '{message}'; end $$"
        )
        conn.execute("create view paused.view_build_queue_status as select paused.stop()")
        with pytest.raises(DatabaseError) as raised:
            fetch_rows(conn, "paused", "prod")
    assert "is paused for a Crystal Forge upgrade" in str(raised.value)
    assert "Fix: once the upgrade is done, rebuild it as deployed: dbt build --target prod" in (
        str(raised.value)
    )
    assert "--vars '{source_schema:" in str(raised.value)
