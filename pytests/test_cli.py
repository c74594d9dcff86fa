"""`./run` as a user sees it: one-line mistakes, `show --watch` surviving, `interrupted.`."""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from buildqueue.database import Database, DatabaseError, start_embedded
from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.report import fetch_rows
from support import cli_process as cli
from support.relations import run_dbt
from support.scratch import VIEW_SCHEMA, scratch_name

ROLE = "buildqueue_scram_user"
REFUSED = ("Refusing to load the example fixtures into target 'prod'", "a non-production")


def one_line(output: str, problem: str, fix: str) -> None:
    assert "Traceback" not in output and output.count(problem) == output.count(fix) == 1, output


def cli_error(*args: str, **env: str) -> str:
    done = cli.run_in_subprocess(*args, env={**os.environ, **env})
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout + done.stderr


def dbt_error(project: DbtProject, *args: str, vars: dict | None = None) -> str:
    return run_dbt(project, *args, vars=vars, expect_pass=False).describe()


@pytest.fixture(scope="module")
def role(scram: Database) -> Database:
    """The scram server as ROLE (password 'right' there) with a wrong password."""
    with scram.connect() as conn:
        conn.execute(f"create role {ROLE} login password 'right'")
    return replace(scram, user=ROLE, password="wrong")


@pytest.mark.parametrize("case", [  # server, changes, problem, fix
    ("database", {"port": 1, "host": "127.0.0.1"}, "reach PostgreSQL at 127.0.0.1:1", "Fix: start"),
    ("database", {"dbname": "no_db"}, "Database 'no_db' does not exist", "(createdb no_db)"),
    ("role", {}, f"rejected the credentials of user '{ROLE}'", "Fix: set PGPASSWORD"),
])  # fmt: skip
def test_a_connection_mistake_is_one_line(request: pytest.FixtureRequest, case: tuple) -> None:
    server, changes, problem, fix = case
    bad = replace(request.getfixturevalue(server), backend="dsn", _stop=None, **changes)
    one_line(cli_error("build", "--database", bad.conninfo()), problem, fix)
    one_line(dbt_error(DbtProject(bad, target="ci"), "run"), problem, fix)


def test_a_scram_server_checks_passwords_and_names_the_refused_role(scram: Any, role: Any) -> None:
    with replace(role, password="right").connect() as conn:
        assert conn.execute("select current_user").fetchone() == (ROLE,)
    with pytest.raises(DatabaseError, match=f"credentials of user '{ROLE}'"):
        scram.connect(user=ROLE)  # sends the session user's password
    fresh = cli_error("dbt", "--database", scram.conninfo(), "docs", "generate")  # no example
    assert "Fix: load the example first (./run build --fixtures)" in fresh, fresh[-2000:]


@pytest.mark.parametrize("case", [  # args, problem, fix, env
    (["show", "--database", "postgresql://me@h:abc/d"], "port 'abc' in the DSN", "e.g. post", {}),
    *[(["show"], "BUILDQUEUE_SCHEMA=", "Fix: set BUILDQUEUE_SCHEMA to 1 to 63 bytes",
       {"BUILDQUEUE_SCHEMA": bad}) for bad in ["monitoring\n", "x" * 64, "", "a\x1b[2Jb"]],
    (["show", "--watch", "-1"], "--watch needs a positive number", "e.g. --watch 5", {}),
    (["sample", "--every", "0"], "--every needs a positive number", "e.g. --every 5", {}),
    (["build"], "Could not find profile named 'buildqueue'", "Fix: copy profiles.yml.example",
     {"DBT_PROFILES_DIR": "/nowhere"}),
    *[([cmd, "--vars", "[1]"], "--vars must be a YAML mapping", "Fix: --vars '{a: b}'", {})
      for cmd in ["build", "view-sql"]],
])  # fmt: skip
def test_a_setting_mistake_is_one_line(database: Database, case: tuple) -> None:
    args, problem, fix, env = case
    dsn = [] if "--database" in args else ["--database", database.conninfo(), "--target", "ci"]
    one_line(cli_error(*args, *dsn, **{"BUILDQUEUE_SCHEMA": VIEW_SCHEMA, **env}), problem, fix)


@pytest.mark.parametrize("case", [  # var, value, problem, fix (test_deploy.py has more)
    ("source_schema", "no_such", "table(s): no_such.commits,", "Fix: point var"),
    ("source_schema", 'cf"x', "Invalid name in var 'source_schema': \"cf\\\"x\"",
     "Fix: set it in dbt_project.yml"),
    *[(var, v, f"var '{var}': \"{v}\"", "Fix it in dbt_project.yml (vars:)")
      for var, v in [("build_complete_status_id", "abc"), ("stale_heartbeat_threshold", "soon")]],
])  # fmt: skip
def test_a_bad_var_is_one_line(project: Any, build: Any, scratch_schema: Any, case: tuple) -> None:
    var, value, problem, fix = case
    vars = {**project.vars, var: value}
    as_yaml = "{" + ", ".join(f"{k}: '{v}'" for k, v in vars.items()) + "}"
    args = ["dbt", "--database", project.database.conninfo(), "run", "--vars", as_yaml]
    # dbt creates the target's schema before it finds the mistake: a scratch one
    one_line(cli_error(*args, BUILDQUEUE_SCHEMA=scratch_schema("bad_vars")), problem, fix)
    one_line(dbt_error(project, "run", vars=vars), problem, fix)


@pytest.mark.parametrize("via", ["cli", "seed", "build", "run"])
def test_fixtures_never_reach_prod(database: Database, scratch_schema: Any, via: str) -> None:
    """Refused before dbt writes anything (dbt may create an empty schema first)."""
    source, view = scratch_schema("prod_guard"), scratch_schema("prod_guard_view")
    vars = {"load_fixtures": True, "source_schema": source}
    if via == "cli":  # `buildqueue dbt seed --target prod` really targets prod
        args = ["dbt", "--database", database.conninfo(), "seed", "--target", "prod", "--vars"]
        one_line(cli_error(*args, str(vars), BUILDQUEUE_SCHEMA=view), *REFUSED)
    else:
        one_line(dbt_error(DbtProject(database, "prod", view), via, vars=vars), *REFUSED)
    query = "select count(*) from pg_class where relnamespace::regnamespace::text in (%s, %s)"
    with database.connect() as conn:
        assert conn.execute(query, [source, view]).fetchone() == (0,)


def test_a_paused_view_says_to_rebuild_as_deployed(database: Database, scratch_schema: Any) -> None:
    schema, paused = scratch_schema("paused"), "view_build_queue_status is paused. Fix: rebuild."
    with database.connect() as conn, pytest.raises(DatabaseError) as raised:
        conn.execute(f"create schema {schema}; create function {schema}.stop() returns int language"
                     f" plpgsql as $$ begin raise exception '{paused}'; end $$; create view"
                     f" {schema}.view_build_queue_status as select {schema}.stop()")  # fmt: skip
        fetch_rows(conn, schema, "prod")
    assert "is paused. Fix: once the upgrade is done, rebuild it as deployed: dbt build --target "\
           "prod --vars '{source_schema: ..." in str(raised.value)  # fmt: skip


HOSTILE = """create schema "Watch Me"; create table {} as select n as nixos_id, case n when 1 then
    E'evil\\x1b[2J\\x07name' else repeat('x', 5000) end as system_name, now() as commit_timestamp,
    'abc' as git_commit_hash, 10 as total_packages, 5 as completed_packages, 2 as building_packages,
    3 as pending_packages, 0 as cached_packages, 300 as active_workers, array(select 'w-' || i from
    generate_series(n, n * 300) i) as worker_ids, now() as earliest_reservation, now() as
    latest_heartbeat, 'building' as status, null as cache_status, false as has_stale_workers from
    generate_series(1, 2) n"""


def _watcher(db: Database) -> int:
    query = "select pid from pg_stat_activity where application_name = 'buildqueue show'"
    with db.connect() as conn:
        while not (row := conn.execute(query).fetchone()):
            time.sleep(0.1)
    return int(row[0])


def test_watch_survives_the_database_and_prints_safely(tmp_path: Path) -> None:
    """Kill, restart, freeze; escaped fitting lines; Ctrl-C works in a job ignoring SIGINT."""
    db, restarted = start_embedded(tmp_path / "pgdata"), None
    with db.connect() as conn:
        conn.execute(sql.SQL(HOSTILE).format(sql.Identifier("Watch Me", "view_build_queue_status")))
    process = cli.start_cli("show", "--database", db.conninfo(), "--watch", "0.5",
        env=cli.cli_env(BUILDQUEUE_SCHEMA="Watch Me", BUILDQUEUE_TIMEOUT="2", COLUMNS="100"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    out, err = cli.lines(process.stdout), cli.lines(process.stderr)
    try:
        seen = cli.until(out, "systems in queue", 120)
        assert all(len(line.rstrip("\n")) <= 100 for line in seen), seen
        assert "\x1b" not in "".join(seen) and "\\x1b[2J\\x07" in "".join(seen)
        assert "2 systems in queue, 600 active workers" in seen[-1]  # w-1..w-600, not 300 + 599
        with db.connect() as conn:  # a terminated backend
            conn.execute("select pg_terminate_backend(%s)", [_watcher(db)])
        cli.until(err, "show: connection lost")
        db.stop()  # a restart
        cli.until(err, "retrying in")
        restarted = start_embedded(tmp_path / "pgdata")
        cli.until(out, "systems in queue")
        os.kill(frozen := _watcher(restarted), signal.SIGSTOP)  # a server that stops answering
        try:
            cli.until(err, "retrying in")
        finally:
            os.kill(frozen, signal.SIGCONT)
        cli.until(out, "systems in queue")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert "interrupted." in cli.until(err, "interrupted.")[-1]
    finally:
        process.kill()
        db.stop()
        restarted.stop() if restarted else None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=str)
def test_no_embedded_server_outlives_the_cli(tmp_path: Path, signum: signal.Signals) -> None:
    """The server stops with a signalled `./run demo`; Ctrl-C: `interrupted.` (130), no FAILED."""
    script = "import sys, pathlib, buildqueue.database as d, buildqueue.cli as c\n" \
        "d.SCRATCH_DIR = pathlib.Path(sys.argv.pop(1)); raise SystemExit(c.main())"  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", script, tmp_path, "demo"], cwd=PROJECT_DIR,
                               env=cli.cli_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    pid_file = tmp_path / "pgdata" / "postmaster.pid"
    try:
        while "ready" not in (text := pid_file.read_text() if pid_file.exists() else ""):
            time.sleep(0.2)
        server, deadline = Path(f"/proc/{text.split()[0]}"), time.monotonic() + 60
        time.sleep(3)  # dbt is parsing or building now
        assert process.poll() is None
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    while server.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.exists(), f"the embedded server outlived the CLI after {signum!r}"
    assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}.get(signum, -9), err
    if signum == signal.SIGINT:
        assert err.strip().endswith("interrupted.") and "FAILED" not in err, err


def test_no_credential_is_left_on_disk_after_sigkill(scram: Database) -> None:
    """dbt gets the password only through its environment: a killed build leaves no file."""
    env = cli.cli_env(BUILDQUEUE_SCHEMA=scratch_name("killed"))
    process = cli.start_cli("build", "--fixtures", "--database", scram.conninfo(), env=env)
    time.sleep(8)  # dbt is running with its profile written
    process.kill()
    process.wait()
    folders = [PROJECT_DIR / ".buildqueue", PROJECT_DIR / "target", PROJECT_DIR / "logs"]
    folders += Path(tempfile.gettempdir()).glob("buildqueue-profile-*")
    for path in (path for folder in folders for path in folder.rglob("*") if path.is_file()):
        with contextlib.suppress(OSError):  # the session's server may remove a file meanwhile
            assert scram.password[-16:].encode() not in path.read_bytes(), path  # its hex tail
