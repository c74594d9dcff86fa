"""Deploys: grants, redeploys, dependent views, lock waits, refusals with the fix, view-sql."""

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.report import VIEW_COLUMNS, fetch_rows
from buildqueue.view_sql import view_sql
from support.cli_process import run_in_subprocess
from support.example import EXPECTED_ROWS, SYSTEM_NAMES
from support.pollers import looping
from support.relations import run_dbt
from support.scratch import EXAMPLE_SCHEMA, VIEW_SCHEMA, ScratchSchemas, scratch_name

VIEW = "view_build_queue_status"
SYSTEMS = frozenset(row["system_name"] for row in EXPECTED_ROWS)
MAX_DASHBOARD_WAIT = 2.5  # seconds: the 1 s lock timeout, and slack for a loaded machine


@pytest.fixture(scope="module")
def deployed(
    project: DbtProject, build: DbtOutcome, reader_role: str, module_scratch_schema: ScratchSchemas
) -> DbtProject:
    """The view and its history over the example, granted to the reader role."""
    vars = {**project.vars, "view_reader_roles": [reader_role]}
    deployed = replace(project, schema=module_scratch_schema("deploy"), vars=vars)
    run_dbt(deployed, "run")
    return deployed


FORBIDDEN = [
    "select * from {source}.derivations", "select * from {source}.derivation_dependencies",
    "select * from {source}.build_reservations",
    "insert into {source}.build_reservations (worker_id, derivation_id) values ('x', 1)",
    "update {source}.derivations set status_id = 6", "delete from {source}.commits",
    "alter view {view} rename to hijacked", "drop view {view}",
    "create or replace view {view} as select 1 as nixos_id",
    "create table {schema}.intruder (id integer)", "delete from {samples}",
    "insert into {samples} (sampled_at) values (now())", "truncate {samples}",
]  # fmt: skip


def test_the_reader_reads_the_view_and_its_history_only(
    database: Database, deployed: DbtProject, reader_role: str
) -> None:
    schema = deployed.schema
    names = {"source": EXAMPLE_SCHEMA, "schema": schema, "view": f"{schema}.{VIEW}",
             "samples": f"{schema}.build_queue_samples"}  # fmt: skip
    grants = "select table_name, privilege_type from information_schema.role_table_grants"
    with database.connect() as admin:
        granted = admin.execute(f"{grants} where grantee = %s and table_schema = %s order by 1",
                                [reader_role, deployed.schema]).fetchall()  # fmt: skip
        # table privileges, not schema visibility, keep the sources closed
        admin.execute(f"grant usage on schema {EXAMPLE_SCHEMA} to {reader_role}")
    assert granted == [("build_queue_samples", "SELECT"), (VIEW, "SELECT")]
    try:
        with database.connect(user=reader_role) as reader:
            rows = reader.execute("select system_name from {view}".format(**names)).fetchall()
            assert [name for (name,) in rows] == SYSTEM_NAMES
            queued = reader.execute("select max(systems_queued) from {samples}".format(**names))
            assert queued.fetchone() == (len(EXPECTED_ROWS),)
            for statement in FORBIDDEN:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    reader.execute(statement.format(**names))
    finally:
        with database.connect() as admin:
            admin.execute(f"revoke usage on schema {EXAMPLE_SCHEMA} from {reader_role}")


def test_grants_follow_view_reader_roles(
    database: Database, deployed: DbtProject, reader_role: str, scratch_schema: ScratchSchemas
) -> None:
    """A sample run without the var keeps the grant; no roles, no grants; a mixed-case role."""
    plain = {"source_schema": EXAMPLE_SCHEMA}
    run_dbt(replace(deployed, vars=plain), "run", "--select", "build_queue_samples")
    other = replace(deployed, schema=scratch_schema("grants"), vars=plain)
    run_dbt(other, "run", "--select", VIEW)
    mixed = scratch_name("reader").replace("reader", "Grafana_Reader")
    with database.connect() as admin:

        def privileges(role: str, schema: str, relation: str = VIEW) -> tuple:
            query = "select has_table_privilege(%s, %s, 'select'),"
            query += " has_schema_privilege(%s, %s, 'usage')"
            return admin.execute(query, [role, f'"{schema}".{relation}', role, schema]).fetchone()

        assert privileges(reader_role, deployed.schema, "build_queue_samples") == (True, True)
        assert privileges(reader_role, other.schema) == (False, False)
        admin.execute(f'create role "{mixed}"')
        try:
            run_dbt(other, "run", "--select", VIEW, vars={"view_reader_roles": [mixed]})
            assert privileges(mixed, other.schema) == (True, True)
        finally:
            admin.execute(f'drop owned by "{mixed}"; drop role "{mixed}"')


def test_three_rebuilds_under_a_poller_and_writing_workers(
    database: Database, example_copy: Callable[..., DbtProject], reader_role: str
) -> None:
    project = example_copy("redeploy", view=False)
    project = replace(project, vars={**project.vars, "view_reader_roles": [reader_role]})
    run_dbt(project, "run", "--select", VIEW)  # the reader's grant exists before polling
    writes = [
        "insert into build_reservations (worker_id, derivation_id, nixos_derivation_id)"
        " values ('writer', 110, 1)", "delete from build_reservations where worker_id = 'writer'",
        "update build_reservations set heartbeat_at = now() where worker_id = 'worker-0'",
        "update derivations set status_id = case when status_id = 8 then 6 else 8 end"
        " where id = 109",
    ]  # fmt: skip

    def poll(conn: psycopg.Connection) -> frozenset:
        return frozenset(name for (name,) in conn.execute(f"select system_name from {VIEW}"))

    def write(conn: psycopg.Connection) -> None:
        for statement in writes:
            conn.execute(statement)

    path = f"-c search_path={project.schema}"
    with (
        looping(lambda: database.connect(user=reader_role, options=path), poll) as seen,
        looping(lambda: database.connect(options=path), write) as written,
    ):
        for _ in range(3):
            before = len(seen)
            run_dbt(project, "run", "--select", VIEW)
            assert len(seen) > before, "the dashboard polled during the rebuild"
    assert set(seen) == {SYSTEMS}, [result for result in seen if result != SYSTEMS][:3]
    assert written and set(written) == {None}, [error for error in written if error][:3]


def _snapshot(conn: psycopg.Connection, schema: str) -> dict[str, Any]:
    """What a redeploy could change: relations, definition, grants, rows, a dependent's rows."""
    relations = "select relname, relkind from pg_class where relnamespace = %s::regnamespace"
    definition = "select pg_get_viewdef(oid), relacl::text from pg_class where oid = %s::regclass"
    return {
        "relations": conn.execute(relations + " order by 1", [schema]).fetchall(),
        "definition": conn.execute(definition, [f"{schema}.{VIEW}"]).fetchone(),
        "rows": conn.cursor(row_factory=dict_row).execute(f"select * from {schema}.{VIEW}")
        .fetchall(),
        "dependent": conn.execute(f"select * from {schema}.building order by 1").fetchall(),
    }  # fmt: skip


def test_rebuilds_keep_the_view_its_grants_and_the_views_built_on_it(
    database: Database, fresh_example: DbtProject, reader_role: str, scratch_schema: ScratchSchemas
) -> None:
    """Repeated, full-refresh and after-failure builds; a dependent view survives them all."""
    vars = {**fresh_example.vars, "view_reader_roles": [reader_role]}
    project = replace(fresh_example, schema=scratch_schema("idempotence"), vars=vars)
    run_dbt(project, "build", "--exclude", "resource_type:seed")
    with database.connect() as conn:
        conn.execute(f"create view {project.schema}.building as select system_name, active_workers"
                     f" from {project.schema}.{VIEW} where status = 'building'")  # fmt: skip
        first = _snapshot(conn, project.schema)
        assert len(first["relations"]) == 4 and len(first["dependent"]) == 2, first
        for vars, extra, expect_pass in [
            ({"stale_heartbeat_threshold": "soon"}, [], False),  # fails at compile time
            ({"source_schema": "no_such_schema"}, [], False),  # fails in on-run-start
            ({}, [], True), ({}, ["--full-refresh"], True),
        ]:  # fmt: skip
            run_dbt(project, "build", "--exclude", "resource_type:seed", *extra, vars=vars,
                    expect_pass=expect_pass)  # fmt: skip
            assert _snapshot(conn, project.schema) == first, (vars, extra)


def test_a_view_with_other_columns_is_swapped_for_the_right_one(
    database: Database, project: DbtProject, build: DbtOutcome, scratch_schema: ScratchSchemas
) -> None:
    schema = scratch_schema("dependents")
    with database.connect() as conn:
        conn.execute(f"create schema {schema}")
        conn.execute(f"create view {schema}.{VIEW} as select 1 as nixos_id, 'x' as something")
        conn.execute(f"create view {schema}.dependent as select nixos_id from {schema}.{VIEW}")
        run_dbt(replace(project, schema=schema), "run", "--select", VIEW)
        described = conn.execute(f"select * from {schema}.{VIEW}").description
        assert tuple(column.name for column in described) == VIEW_COLUMNS
        assert conn.execute(f"select count(*) from {schema}.{VIEW}").fetchone() == (3,)


@pytest.mark.parametrize(("held", "retries", "expect_pass"), [(3, 5, True), (8, 1, False)])
def test_a_held_reader_bounds_the_deploys_wait(
    database: Database, deployed: DbtProject, reader_role: str,
    held: float, retries: int, expect_pass: bool,
) -> None:  # fmt: skip
    """The deploy waits 1 s a try while dashboards poll; gets the lock or names the reader."""
    view = f'"{deployed.schema}".{VIEW}'
    waiting = "select exists (select from pg_locks where relation = %s::regclass and not granted)"

    def let_go_after_the_deploy_waited(reader: psycopg.Connection) -> None:
        with database.connect() as admin:
            deadline = time.monotonic() + 60  # dbt's parse takes seconds; never hang here
            while not admin.execute(waiting, [view]).fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(held)
        reader.rollback()

    def dashboard(conn: psycopg.Connection) -> float:
        started = time.perf_counter()
        conn.execute(f"select * from {view}").fetchall()
        return time.perf_counter() - started

    with database.connect(user=reader_role, autocommit=False) as reader:
        reader.execute(f"select count(*) from {view}").fetchall()  # holds its lock from now
        (release := threading.Thread(target=let_go_after_the_deploy_waited, args=[reader])).start()
        try:
            with looping(lambda: database.connect(user=reader_role), dashboard) as latencies:
                outcome = run_dbt(deployed, "run", "--select", VIEW, expect_pass=expect_pass,
                                  vars={"view_replace_lock_timeout": "1 second",
                                        "view_replace_lock_retries": retries})  # fmt: skip
        finally:
            release.join()
        pid = reader.info.backend_pid
    assert all(isinstance(wait, float) for wait in latencies), latencies
    assert max(latencies) < MAX_DASHBOARD_WAIT, f"a dashboard query waited {max(latencies):.1f} s"
    if not expect_pass:
        message = outcome.describe()
        assert f"pid {pid} (user {reader_role}, application " in message, message
        assert "idle in transaction" in message and "held it through 2 tries of 1 second" in message
        assert "Fix: end that transaction (select pg_terminate_backend(pid))" in message


def test_a_readers_own_function_sees_only_the_views_rows(
    database: Database, deployed: DbtProject, reader_role: str
) -> None:
    """Issue 16: a cheap function in a `where` must not see filtered rows (security_barrier)."""
    seen: list[str] = []
    with database.connect(user=reader_role) as conn:
        conn.add_notice_handler(lambda notice: seen.append(notice.message_primary or ""))
        conn.execute("create function pg_temp.peek(id integer, name text) returns boolean"
                     " language plpgsql cost 0.0000001 as"
                     " $$ begin raise notice '% %', id, name; return true; end $$")  # fmt: skip
        conn.execute(f'select * from "{deployed.schema}".{VIEW} where pg_temp.peek(nixos_id,'
                     " system_name)").fetchall()  # fmt: skip
    expected = (f"{row['nixos_id']} {row['system_name']}" for row in EXPECTED_ROWS)
    assert sorted(seen) == sorted(expected)


@pytest.mark.parametrize(
    ("env_var", "value"),
    [("BUILDQUEUE_SCHEMA", '{canary}"; drop table {canary}.canary; --'),
     ("BUILDQUEUE_SCHEMA", "{canary}\n"), ("BUILDQUEUE_AUDIT_SCHEMA", "audit\n")],
    ids=["quote", "newline", "audit-newline"],
)  # fmt: skip
def test_a_hostile_schema_from_the_environment_is_refused_on_prod(
    database: Database, build: DbtOutcome, scratch_schema: ScratchSchemas,
    monkeypatch: pytest.MonkeyPatch, env_var: str, value: str,
) -> None:  # fmt: skip
    """`dbt run --target prod` with profiles.yml.example's prod target, as deployed."""
    canary = scratch_schema("canary")
    with database.connect() as conn:
        conn.execute(f"create schema {canary}; create table {canary}.canary (id integer)")
        monkeypatch.setenv("BUILDQUEUE_SCHEMA", canary)
        monkeypatch.setenv(env_var, value.format(canary=canary))
        prod = DbtProject(database, target="prod", vars={"source_schema": EXAMPLE_SCHEMA})
        message = run_dbt(prod, "run", "--select", VIEW, expect_pass=False).describe()
        assert f"(env var {env_var}" in message and "Fix: set " in message, message
        assert conn.execute(f"select count(*) from {canary}.canary").fetchone() == (0,)
        built = conn.execute("select to_regclass(%s)", [f"{canary}.{VIEW}"])
        assert built.fetchone() == (None,)


MISSING_ROLE = scratch_name("missing_reader")  # never created
BAD_VARS = {
    "source_schema": ({"source_schema": EXAMPLE_SCHEMA.upper()},
                      f"Missing Crystal Forge source table(s): {EXAMPLE_SCHEMA.upper()}.commits"),
    "role quote": ({"view_reader_roles": ['grafana"; drop role grafana; --']},
                   "Invalid name in var 'view_reader_roles': "),
    "role newline": ({"view_reader_roles": ["grafana\n"]},
                     "Invalid name in var 'view_reader_roles': \"grafana\\n\""),
    "missing role": ({"view_reader_roles": [MISSING_ROLE]},
                     f"Reader role(s) {MISSING_ROLE} (var view_reader_roles) do not exist",
                     "Fix: create them first, e.g. psql -c "
                     f"'create role \"{MISSING_ROLE}\" login'"),
    **{unit: ({var: value}, f"Invalid value for var '{var}': \"{value}\"") for unit, var, value in [
        ("days", "stale_heartbeat_threshold", "999999999999 days"),
        ("seconds", "queue_sample_interval", "0.0000001 seconds"),
        ("hours", "stuck_building_threshold", "99999999999999 hours")]},
    "retention": ({"queue_sample_interval": "1 day", "queue_sample_retention": "12 hours"},
                  'Var queue_sample_retention ("12 hours") must be longer than var '
                  'queue_sample_interval ("1 day")'),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_VARS))
def test_a_bad_var_is_one_message_with_the_fix(deployed: DbtProject, case: str) -> None:
    vars, *problems = BAD_VARS[case]
    message = run_dbt(deployed, "run", vars=vars, expect_pass=False).describe()
    assert all(p in message for p in problems) and message.count("Fix") == 1, message
    assert not any(s in message for s in ("approximate match", "Database Error", "Traceback"))


@pytest.mark.parametrize(
    ("args", "schema", "fragments"),
    [(["show", "--target", "ci"], "not_built",
      ["error: {schema}.view_build_queue_status does not exist in database",
       "Fix: build it first: ./run build"]),
     (["view-sql", "--vars", "source_schema"], "view_sql_vars", ["--vars must be a YAML mapping"])],
)  # fmt: skip
def test_the_command_line_says_what_to_fix(
    database: Database, scratch_schema: ScratchSchemas, args: list, schema: str, fragments: list
) -> None:
    schema = scratch_schema(schema)
    env = {**os.environ, "BUILDQUEUE_SCHEMA": schema}
    completed = run_in_subprocess(args[0], "--database", database.conninfo(), *args[1:], env=env)
    assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert all(f.format(schema=schema) in completed.stderr for f in fragments), completed.stderr


def test_view_sql_gives_the_view_dbt_builds(
    database: Database, project: DbtProject, build: DbtOutcome, reader_role: str,
    scratch_schema: ScratchSchemas,
) -> None:  # fmt: skip
    migration = replace(project, schema=scratch_schema("view_sql"))
    statement = view_sql(migration, {"view_reader_roles": [reader_role]})
    assert f'"{database.dbname}".' not in statement  # runs in whichever database it is applied to
    query = "select pg_get_viewdef(oid), reloptions from pg_class where oid = to_regclass(%s)"
    with database.connect() as conn:
        assert conn.execute(query, [f"{migration.schema}.{VIEW}"]).fetchone() is None  # printing
        conn.execute(statement)
        applied = conn.execute(query, [f"{migration.schema}.{VIEW}"]).fetchone()
        assert applied == conn.execute(query, [f"{VIEW_SCHEMA}.{VIEW}"]).fetchone()
        assert applied[1] == ["security_barrier=true"]
        built = fetch_rows(conn, VIEW_SCHEMA)
    with database.connect(user=reader_role) as reader:
        assert fetch_rows(reader, migration.schema) == built
