"""The suite leaves a user's server as it found it (pytests/support/scratch.py).

A representative part of the suite runs in a subprocess through the DSN backend, as
`BUILDQUEUE_DATABASE=postgresql://... ./run test` would, against this session's server:
its schemas and roles are the same before and after, while the run demonstrably created
(and dropped) scratch schemas of its own. The guard that fails a run leaving something
behind is checked directly too.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from psycopg import sql

from buildqueue.database import Database
from buildqueue.paths import PROJECT_DIR
from support import scratch
from support.scratch import (
    NAME_LIMIT,
    PREFIX,
    Inventory,
    LeftBehind,
    nothing_left_behind,
    scratch_name,
)

INNER_TOKEN = secrets.token_hex(4)  # the inner run's scratch names: bqt_<this>_<purpose>
INNER_PREFIX = f"bqt_{INNER_TOKEN}_"
SUBSET = [
    "pytests/test_example.py::test_example_rows",  # the shared example: source, view schemas
    "pytests/test_grants.py::test_reader_can_select_the_view",  # a module's schema, a role
    "pytests/test_freshness.py::test_freshness_warns_when_every_heartbeat_is_old",  # a copy
    "pytests/test_errors.py::test_fixtures_refused_on_prod_through_dbt[seed]",  # dbt's own
]
EXPECTED_SCRATCH = {
    "schema example",
    "schema ci",
    "schema grants",
    "schema freshness",
    "role reader",
}
PYTEST = [sys.executable, "-m", "pytest", "-c", "pyproject.toml", "--rootdir", "."]
PYTEST += ["-p", "no:cacheprovider", "-q"]
POLL_SECONDS = 0.3
RUN_TIMEOUT_SECONDS = 900


def test_scratch_names_are_this_sessions_and_fit_postgresql() -> None:
    assert scratch_name("grants") == f"{PREFIX}_grants" == scratch_name("grants")
    assert len(PREFIX) == len("bqt_") + 8
    longest = "x" * (NAME_LIMIT - len(PREFIX) - 1)
    assert len(scratch_name(longest)) == NAME_LIMIT
    for bad in (longest + "x", "Grants", "drop; role", "", "1st"):
        with pytest.raises(ValueError, match="Fix: use lowercase letters"):
            scratch_name(bad)


def test_a_token_from_the_environment_must_be_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(scratch.TOKEN_ENV, "0badc0de")
    assert scratch.session_prefix() == "bqt_0badc0de"
    monkeypatch.setenv(scratch.TOKEN_ENV, "../etc")
    with pytest.raises(ValueError, match="is not 8 lowercase hex digits"):
        scratch.session_prefix()


def test_the_guard_names_what_a_run_left_behind(database: Database) -> None:
    """A schema and a role outside the scratch names are reported (and left alone)."""
    stranger = f"left_behind_{PREFIX.removeprefix('bqt_')}"
    try:
        with (
            pytest.raises(LeftBehind) as raised,
            nothing_left_behind(database),
            database.connect() as conn,
        ):
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(stranger)))
            conn.execute(sql.SQL("create role {}").format(sql.Identifier(stranger)))
        message = str(raised.value)
        assert f"schema {stranger} (left behind)" in message
        assert f"role {stranger} (left behind)" in message
        assert "Fix: name every schema or role a test creates with a scratch fixture" in message
    finally:
        with database.connect() as conn:
            conn.execute(sql.SQL("drop schema if exists {}").format(sql.Identifier(stranger)))
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(stranger)))


def test_the_guard_drops_and_names_scratch_objects_nobody_dropped(database: Database) -> None:
    stray = scratch_name("stray")
    with (
        pytest.raises(LeftBehind) as raised,
        nothing_left_behind(database),
        database.connect() as conn,
    ):
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(stray)))
    assert f"schema {stray} (not dropped by its fixture; dropped now)" in str(raised.value)
    assert stray not in Inventory.of(database).schemas


def test_the_guard_names_what_a_run_dropped(database: Database) -> None:
    """A schema that existed before the run and is gone after is reported too."""
    victim = scratch_name("victim")
    with database.connect() as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(victim)))
    try:
        with (
            pytest.raises(LeftBehind, match=rf"schema {victim} \(dropped, it existed before\)"),
            nothing_left_behind(database),
            database.connect() as conn,
        ):
            conn.execute(sql.SQL("drop schema {}").format(sql.Identifier(victim)))
    finally:
        with database.connect() as conn:
            conn.execute(sql.SQL("drop schema if exists {}").format(sql.Identifier(victim)))


@contextmanager
def _watching(database: Database) -> Iterator[set[str]]:
    """Collects the inner run's scratch schemas and roles (by prefix) while the block runs."""
    seen: set[str] = set()
    stop = threading.Event()

    def poll() -> None:
        with database.connect() as conn:
            while not stop.wait(POLL_SECONDS):
                rows = conn.execute(
                    "select 'schema', nspname from pg_namespace where starts_with(nspname, %s)"
                    " union all"
                    " select 'role', rolname from pg_roles where starts_with(rolname, %s)",
                    [INNER_PREFIX, INNER_PREFIX],
                )
                seen.update(f"{kind} {name.removeprefix(INNER_PREFIX)}" for kind, name in rows)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


@pytest.mark.slow
def test_a_dsn_run_of_the_suite_leaves_the_server_as_it_found_it(database: Database) -> None:
    env = {
        **os.environ,
        "BUILDQUEUE_DATABASE": database.conninfo(),
        scratch.TOKEN_ENV: INNER_TOKEN,
    }
    before = Inventory.of(database)
    with _watching(database) as seen:
        completed = subprocess.run(
            [*PYTEST, *SUBSET],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
    output = completed.stdout[-4000:] + completed.stderr[-2000:]
    assert completed.returncode == 0, output
    assert Inventory.of(database).changes_since(before) == []
    assert seen >= EXPECTED_SCRATCH, f"the inner run made only {sorted(seen)}:\n{output}"
