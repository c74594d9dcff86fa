"""Clear failures: every misconfiguration gives one message naming the problem and the fix.

Each case runs through the CLI (a `python -m buildqueue` subprocess, as a user types it)
and through dbt (`DbtProject.invoke`, dbt in-process). The wrong-password cases run
against a throw-away embedded server that requires scram-sha-256 for every role.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildqueue.cli import _parser
from buildqueue.database import Database, DatabaseError, free_port, start_embedded
from buildqueue.dbt import DbtError, DbtOutcome, DbtProject
from support.cli_process import run_in_subprocess
from support.example import SOURCE_SCHEMA as DEFAULT_SOURCE_SCHEMA
from support.scratch import EXAMPLE_SCHEMA, ScratchSchemas, drop_schemas, scratch_name

PASSWORD_ROLE = "buildqueue_scram_user"  # on a throw-away server of its own (scram_server)
PARTIAL_SCHEMA = scratch_name("partial")


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `python -m buildqueue ARGS`; it must fail; returns stdout + stderr."""
    completed = run_in_subprocess(*args, env=env)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    return output


def assert_one_message(output: str, problem: str, fix: str) -> None:
    """``problem`` and ``fix`` are each said exactly once, and no traceback is shown."""
    assert "Traceback" not in output, output
    assert output.count(problem) == 1, output
    assert output.count(fix) == 1, output


def dbt_error(project: DbtProject, *args: str, vars: dict | None = None) -> str:
    with pytest.raises(DbtError) as raised:
        project.invoke(*args, vars=vars)
    return str(raised.value)


def at(database: Database, **changes: object) -> Database:
    """The same server, with some connection parameters changed."""
    fields = {
        "host": database.host,
        "port": database.port,
        "user": database.user,
        "password": database.password,
        "dbname": database.dbname,
        "backend": "dsn",
        **changes,
    }
    return Database(**fields)  # type: ignore[arg-type]


def dsn(database: Database) -> str:
    return database.conninfo()


@pytest.fixture(scope="module")
def scram_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A throw-away server where every role must give its password (scram-sha-256), with
    PASSWORD_ROLE (password 'right-password'); yielded with a wrong password."""
    db = start_embedded(
        tmp_path_factory.mktemp("scram") / "pgdata", password="admin-pw", tcp_port=free_port()
    )
    try:
        with db.connect() as conn:
            conn.execute(f"create role {PASSWORD_ROLE} login password 'right-password'")
        yield at(db, user=PASSWORD_ROLE, password="wrong-password")
    finally:
        db.stop()


# --- connections -------------------------------------------------------------------------

UNREACHABLE = ("Cannot reach PostgreSQL at 127.0.0.1:1", "Fix: start the server")
WRONG_PASSWORD = (
    f"rejected the credentials of user '{PASSWORD_ROLE}'",
    "Fix: set PGPASSWORD",
)
MISSING_DATABASE = ("Database 'no_such_db' does not exist", "Fix: create it (createdb no_such_db)")


def test_unreachable_host(database: Database) -> None:
    bad = at(database, host="127.0.0.1", port=1)
    assert_one_message(cli("build", "--database", dsn(bad)), *UNREACHABLE)
    message = dbt_error(DbtProject(bad, target="ci"), "run")
    assert_one_message(message, *UNREACHABLE)


def test_wrong_password(scram_server: Database) -> None:
    assert_one_message(cli("build", "--database", dsn(scram_server)), *WRONG_PASSWORD)
    message = dbt_error(DbtProject(scram_server, target="ci"), "run")
    assert_one_message(message, *WRONG_PASSWORD)


def test_right_password_gets_in(scram_server: Database) -> None:
    """The throw-away server really checks the password (so the test above can fail)."""
    with at(scram_server, password="right-password").connect() as conn:
        assert conn.execute("select current_user").fetchone() == (PASSWORD_ROLE,)


def test_the_refused_role_is_named_not_the_session_user(scram_server: Database) -> None:
    admin = at(scram_server, user="postgres", password="admin-pw")
    with pytest.raises(DatabaseError, match=f"credentials of user '{PASSWORD_ROLE}'"):
        admin.connect(user=PASSWORD_ROLE)  # sends the session user's password


def test_dbt_on_a_fresh_database_says_to_load_the_example(tmp_path: Path) -> None:
    """`./run dbt docs generate` on a fresh clone: one line saying what to do first."""
    fresh = start_embedded(tmp_path / "pgdata")
    try:
        output = cli("dbt", "--database", dsn(fresh), "docs", "generate")
    finally:
        fresh.stop()
    assert "Fix: load the example first (./run build --fixtures)" in output, output[-2000:]


MALFORMED_PORT = ("The port 'abc' in the DSN is not a number", "Fix: e.g. postgresql://")


def test_a_malformed_dsn_port_is_one_line() -> None:
    assert_one_message(
        cli("show", "--database", "postgresql://me@127.0.0.1:abc/db"), *MALFORMED_PORT
    )


@pytest.mark.parametrize("schema", ["monitoring\n", "x" * 64, "", "a\x1b[2Jb"])
def test_a_schema_from_the_environment_must_be_one_identifier(
    database: Database, schema: str
) -> None:
    env = {**os.environ, "BUILDQUEUE_SCHEMA": schema}
    output = cli("show", "--database", dsn(database), env=env)
    assert_one_message(output, "BUILDQUEUE_SCHEMA=", "Fix: set BUILDQUEUE_SCHEMA to 1 to 63 bytes")


def test_missing_database(database: Database) -> None:
    bad = at(database, dbname="no_such_db")
    assert_one_message(cli("dbt", "--database", dsn(bad), "run"), *MISSING_DATABASE)
    message = dbt_error(DbtProject(bad, target="ci"), "run")
    assert_one_message(message, *MISSING_DATABASE)


# --- sources and vars ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def partial_schema(
    database: Database, build: DbtOutcome, module_scratch_schema: ScratchSchemas
) -> str:
    """A source schema with every Crystal Forge table but build_reservations."""
    schema = module_scratch_schema("partial")
    with database.connect() as conn:
        conn.execute(f"create schema {schema}")
        for table in ("commits", "derivations", "derivation_dependencies"):
            conn.execute(
                f"create table {schema}.{table} (like {EXAMPLE_SCHEMA}.{table} including all)"
            )
    return schema


BAD_VARS = {
    "missing source table": (
        {"source_schema": PARTIAL_SCHEMA},
        f"Missing Crystal Forge source table(s): {PARTIAL_SCHEMA}.build_reservations ",
        "Fix: point var source_schema at the schema that holds them",
    ),
    "wrong source schema": (
        {"source_schema": "no_such_schema"},
        "Missing Crystal Forge source table(s): no_such_schema.commits,",
        "Fix: point var source_schema at the schema that holds them",
    ),
    "malformed source schema": (
        {"source_schema": 'crystal"forge'},
        'Invalid name in var \'source_schema\': "crystal\\"forge"',
        "Fix: set it in dbt_project.yml (vars:) or in --vars",
    ),
    "status id not an integer": (
        {"build_complete_status_id": "abc"},
        "Invalid value for var 'build_complete_status_id': \"abc\"",
        "Fix it in dbt_project.yml (vars:) or in --vars",
    ),
    "threshold not an interval": (
        {"stale_heartbeat_threshold": "soon"},
        "Invalid value for var 'stale_heartbeat_threshold': \"soon\"",
        "Fix it in dbt_project.yml (vars:) or in --vars",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VARS))
def test_bad_source_or_var(
    database: Database,
    project: DbtProject,
    partial_schema: str,
    scratch_schema: ScratchSchemas,
    case: str,
) -> None:
    vars, problem, fix = BAD_VARS[case]
    given = {**project.vars, **vars}
    as_yaml = "{" + ", ".join(f"{key}: '{value}'" for key, value in given.items()) + "}"
    # dbt creates the target's schema before it finds the mistake: a scratch one
    env = {**os.environ, "BUILDQUEUE_SCHEMA": scratch_schema("bad_vars")}
    output = cli("dbt", "--database", dsn(database), "run", "--vars", as_yaml, env=env)
    assert_one_message(output, problem, fix)
    assert_one_message(dbt_error(project, "run", vars=vars), problem, fix)


# --- fixtures never reach production -------------------------------------------------------

REFUSED = (
    "Refusing to load the example fixtures into target 'prod'",
    "run against a non-production",
)
GUARD_SCHEMA = scratch_name("prod_guard")


def _schema_exists(database: Database, schema: str) -> bool:
    with database.connect() as conn:
        found = conn.execute("select 1 from pg_namespace where nspname = %s", [schema])
        return found.fetchone() is not None


def _tables_in(database: Database, schema: str) -> list[str]:
    """Tables and views in ``schema``. dbt creates a run's (empty) schemas before the
    on-run-start hooks refuse, so an empty schema may appear; nothing may be written."""
    with database.connect() as conn:
        found = conn.execute(
            "select relname from pg_class join pg_namespace on pg_namespace.oid = relnamespace"
            " where nspname = %s",
            [schema],
        )
        return [row[0] for row in found]


def test_fixtures_refused_on_prod_through_the_cli(database: Database) -> None:
    """`build` takes no --vars: the seeds' schema is var source_schema's default, which dbt
    creates (empty) before it refuses; dropped after, unless it was there before."""
    existed = _schema_exists(database, DEFAULT_SOURCE_SCHEMA)
    try:
        output = cli("build", "--fixtures", "--target", "prod", "--database", dsn(database))
        assert_one_message(output, *REFUSED)
        assert not _schema_exists(database, "monitoring")
        assert existed or _tables_in(database, DEFAULT_SOURCE_SCHEMA) == []
    finally:
        if not existed:
            drop_schemas(database, [DEFAULT_SOURCE_SCHEMA])


@pytest.mark.parametrize("command", ["seed", "build", "run"])
def test_fixtures_refused_on_prod_through_dbt(
    database: Database, build: DbtOutcome, scratch_schema: ScratchSchemas, command: str
) -> None:
    """Refused before dbt writes anything: not even the seed tables appear."""
    prod = DbtProject(database, target="prod", schema=scratch_schema("prod_guard_view"))
    vars = {"load_fixtures": True, "source_schema": scratch_schema("prod_guard")}
    assert_one_message(dbt_error(prod, command, vars=vars), *REFUSED)
    assert _tables_in(database, GUARD_SCHEMA) == []
    assert _tables_in(database, prod.view_schema()) == []


def test_target_option_of_dbt_passthrough_is_honoured(
    database: Database, scratch_schema: ScratchSchemas
) -> None:
    """`buildqueue dbt seed --target prod` really targets prod, so it is refused."""
    output = cli(
        "dbt", "--database", dsn(database), "seed", "--target", "prod", "--vars",
        f"{{load_fixtures: true, source_schema: {scratch_schema('prod_guard')}}}",
    )  # fmt: skip
    assert_one_message(output, *REFUSED)
    assert _tables_in(database, GUARD_SCHEMA) == []


# --- profile -------------------------------------------------------------------------------

NO_PROFILE = ("Could not find profile named 'buildqueue'", "Fix: copy profiles.yml.example")


def test_missing_profile(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "DBT_PROFILES_DIR": str(tmp_path)}
    assert_one_message(cli("build", "--database", dsn(database), env=env), *NO_PROFILE)
    monkeypatch.setenv("DBT_PROFILES_DIR", str(tmp_path))
    assert_one_message(dbt_error(DbtProject(database, target="ci"), "run"), *NO_PROFILE)


def test_build_takes_vars_like_the_other_commands() -> None:
    for command in ("build", "view-sql", "sample"):
        assert _parser().parse_args([command, "--vars", "{a: 1}"]).vars == "{a: 1}"
