"""Safe deploys under a held reader, hostile readers and hostile names (issue 16, dbt side).

* A reader's open transaction never freezes dashboards: the deploy waits at most
  view_replace_lock_timeout per try for the view's lock, retries, and gives up naming
  the session (macros/materializations/view.sql, lock_view).
* A reader's own function in a `where` sees only the view's rows (security_barrier).
* Names from vars and environment variables follow one rule (macros/settings/identifier.sql);
  intervals are bounded and the sample interval/retention pair is checked.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from buildqueue.database import Database
from buildqueue.dbt import PROJECT_DIR, DbtOutcome, DbtProject
from support.example import EXPECTED_ROWS
from support.scratch import EXAMPLE_SCHEMA, ScratchSchemas, scratch_name

LOCK_VARS = {"view_replace_lock_timeout": "1 second"}
MAX_DASHBOARD_WAIT = 2.5  # seconds: the 1 s lock timeout, and slack for a loaded machine
MIXED_CASE_ROLE = scratch_name("reader").replace("reader", "Grafana_Reader")


@pytest.fixture(scope="module")
def deployed(
    project: DbtProject, build: DbtOutcome, reader_role: str, module_scratch_schema: ScratchSchemas
) -> DbtProject:
    """The view in a schema of this module's, readable by the reader role."""
    vars = {**project.vars, "view_reader_roles": [reader_role]}
    deployed = replace(project, schema=module_scratch_schema("deploy_safety"), vars=vars)
    deployed.invoke("run", "--select", "view_build_queue_status")
    return deployed


def _deploy_under_a_held_reader(
    database: Database, project: DbtProject, reader_role: str, held: float, retries: int
) -> tuple[DbtOutcome, float, int]:
    """Redeploy while a reader keeps a transaction open on the view until ``held`` seconds
    after the deploy first waits for the view's lock, and a dashboard queries it in a loop.
    Returns the outcome, the dashboard's slowest query (s) and the reader's pid."""
    view = f'"{project.schema}".view_build_queue_status'
    stop, latencies = threading.Event(), [0.0]
    waiting = "select exists (select from pg_locks where relation = %s::regclass and not granted)"

    def release_after_the_deploy_waited(reader: psycopg.Connection) -> None:
        with database.connect() as admin:
            deadline = time.monotonic() + 60  # dbt's parse takes seconds; never hang here
            while not admin.execute(waiting, [view]).fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(held)
        reader.rollback()

    def dashboard() -> None:
        with database.connect(user=reader_role) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute(f"select * from {view}").fetchall()
                latencies.append(time.perf_counter() - started)
                stop.wait(0.05)

    with database.connect(user=reader_role, autocommit=False) as reader:
        reader.execute(f"select count(*) from {view}").fetchall()  # holds its lock from now
        release = threading.Thread(target=release_after_the_deploy_waited, args=(reader,))
        poller = threading.Thread(target=dashboard)
        release.start()
        poller.start()
        try:
            outcome = project.invoke(
                "run", "--select", "view_build_queue_status",
                vars={**LOCK_VARS, "view_replace_lock_retries": retries}, check=False,
            )  # fmt: skip
        finally:
            stop.set()
            poller.join()
            release.join()
        return outcome, max(latencies), reader.info.backend_pid


def test_a_deploy_waits_out_a_reader_without_holding_dashboards(
    database: Database, deployed: DbtProject, reader_role: str
) -> None:
    outcome, slowest, _ = _deploy_under_a_held_reader(database, deployed, reader_role, 3, 5)
    assert outcome.success, outcome.describe()
    assert slowest < MAX_DASHBOARD_WAIT, f"a dashboard query waited {slowest:.1f} s"


def test_a_deploy_gives_up_naming_the_reader(
    database: Database, deployed: DbtProject, reader_role: str
) -> None:
    outcome, slowest, pid = _deploy_under_a_held_reader(database, deployed, reader_role, 8, 1)
    message = outcome.describe()
    assert not outcome.success
    assert f"pid {pid} (user {reader_role}, application " in message, message
    assert "idle in transaction" in message and "held it through 2 tries of 1 second" in message
    assert "Fix: end that transaction (select pg_terminate_backend(pid))" in message
    assert slowest < MAX_DASHBOARD_WAIT, f"a dashboard query waited {slowest:.1f} s"


def test_a_readers_own_function_sees_only_the_views_rows(
    database: Database, deployed: DbtProject, reader_role: str
) -> None:
    """The leak of issue 16: a cheap function in a `where` would run on the source rows
    the view filters out (non-queued systems, packages) if the planner pushed it down."""
    seen: list[str] = []
    with database.connect(user=reader_role) as conn:
        conn.add_notice_handler(lambda notice: seen.append(notice.message_primary or ""))
        conn.execute(
            "create function pg_temp.peek(id integer, name text) returns boolean"
            " language plpgsql cost 0.0000001 as"
            " $$ begin raise notice '% %', id, name; return true; end $$"
        )
        view = f'"{deployed.schema}".view_build_queue_status'
        conn.execute(f"select * from {view} where pg_temp.peek(nixos_id, system_name)").fetchall()
    assert sorted(seen) == sorted(
        f"{row['nixos_id']} {row['system_name']}" for row in EXPECTED_ROWS
    )


# --- names from vars and environment variables --------------------------------------------


@pytest.fixture
def mixed_case_role(database: Database) -> Iterator[str]:
    with database.connect() as conn:
        conn.execute(f'create role "{MIXED_CASE_ROLE}"')
    yield MIXED_CASE_ROLE
    with database.connect() as conn:
        conn.execute(f'drop owned by "{MIXED_CASE_ROLE}"')
        conn.execute(f'drop role "{MIXED_CASE_ROLE}"')


def test_a_mixed_case_reader_gets_select_and_usage(
    database: Database, deployed: DbtProject, mixed_case_role: str
) -> None:
    deployed.invoke("run", "--select", "view_build_queue_status",
                    vars={"view_reader_roles": [mixed_case_role]})  # fmt: skip
    with database.connect() as conn:
        granted = conn.execute(
            "select has_table_privilege(%s, %s, 'select'), has_schema_privilege(%s, %s, 'usage')",
            [mixed_case_role, f'"{deployed.schema}".view_build_queue_status',
             mixed_case_role, deployed.schema],
        ).fetchone()  # fmt: skip
    assert granted == (True, True)


@pytest.mark.parametrize(
    ("env_var", "value"),
    [
        ("BUILDQUEUE_SCHEMA", '{canary}"; drop table {canary}.canary; --'),
        ("BUILDQUEUE_SCHEMA", "{canary}\n"),
        ("BUILDQUEUE_AUDIT_SCHEMA", "audit\n"),
    ],
    ids=["quote", "newline", "audit-newline"],
)
def test_a_hostile_schema_from_the_environment_is_refused_on_prod(
    database: Database,
    build: DbtOutcome,
    scratch_schema: ScratchSchemas,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env_var: str,
    value: str,
) -> None:
    """`dbt run --target prod` as docs/production.md runs it: plain dbt, profiles.yml.example."""
    from dbt.cli.main import dbtRunner

    canary = scratch_schema("canary")
    with database.connect() as conn:
        conn.execute(f"create schema {canary}; create table {canary}.canary (id integer)")
    shutil.copy(PROJECT_DIR / "profiles.yml.example", tmp_path / "profiles.yml")
    for name, setting in {**database.env(), "BUILDQUEUE_SCHEMA": canary}.items():
        monkeypatch.setenv(name, setting)
    monkeypatch.setenv(env_var, value.format(canary=canary))
    messages: list[str] = []
    outcome = dbtRunner(callbacks=[lambda event: messages.append(event.info.msg)]).invoke(
        ["run", "--select", "view_build_queue_status", "--target", "prod",
         "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(tmp_path),
         "--no-send-anonymous-usage-stats",
         "--vars", f"{{source_schema: {EXAMPLE_SCHEMA}}}"]
    )  # fmt: skip
    assert not outcome.success
    assert any(f"(env var {env_var}" in m and "Fix: set " in m for m in messages), messages[-3:]
    with database.connect() as conn:
        assert conn.execute(f"select count(*) from {canary}.canary").fetchone() == (0,)
        built = conn.execute("select to_regclass(%s)", [f"{canary}.view_build_queue_status"])
        assert built.fetchone() == (None,)


# --- one line naming the var and the fix ---------------------------------------------------

BAD_VARS = {
    "source_schema": ({"source_schema": EXAMPLE_SCHEMA.upper()},
                      f"Missing Crystal Forge source table(s): {EXAMPLE_SCHEMA.upper()}.commits"),
    "role newline": ({"view_reader_roles": ["grafana\n"]},
                     "Invalid name in var 'view_reader_roles': \"grafana\\n\""),
    "days": ({"stale_heartbeat_threshold": "999999999999 days"},
             "Invalid value for var 'stale_heartbeat_threshold': \"999999999999 days\""),
    "seconds": ({"queue_sample_interval": "0.0000001 seconds"},
                "Invalid value for var 'queue_sample_interval': \"0.0000001 seconds\""),
    "hours": ({"stuck_building_threshold": "99999999999999 hours"},
              "Invalid value for var 'stuck_building_threshold': \"99999999999999 hours\""),
    "retention": ({"queue_sample_interval": "1 day", "queue_sample_retention": "12 hours"},
                  "Var queue_sample_retention (\"12 hours\") must be longer than var "
                  "queue_sample_interval (\"1 day\")"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_VARS))
def test_a_bad_var_is_one_line_with_the_fix(deployed: DbtProject, case: str) -> None:
    vars, problem = BAD_VARS[case]
    outcome = deployed.invoke("run", vars=vars, check=False)
    message = outcome.describe()
    assert not outcome.success
    assert problem in message and message.count("Fix") == 1, message
    assert "approximate match" not in message.lower() and "Database Error" not in message
