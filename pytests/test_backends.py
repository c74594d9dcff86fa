"""The ways in (PG*, a scram server's DSN, testcontainers), dbt's profile, the leftovers guard."""

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from buildqueue import database as pg
from buildqueue.database import Database, DatabaseError
from buildqueue.dbt import PASSWORD_ENV, DbtError, DbtProject, profile_dict
from buildqueue.report import fetch_rows
from support import scratch
from support.example import SYSTEM_NAMES

JINJA_PROFILE = """buildqueue: {target: live, outputs: {live: {type: postgres, host: elsewhere,
  port: 1, user: nobody, dbname: nothing, threads: 1,
  schema: "{{ (env_var('BUILDQUEUE_TEST_PREFIX', 'Grafana') ~ '_views') | lower }}"}}}"""
Env = pytest.MonkeyPatch


def test_the_env_backend_a_dsn_and_no_docker(database: Database, monkeypatch: Env) -> None:
    for key, value in database.env().items():
        monkeypatch.setenv(key, value)
    db, query = pg.open_database("env"), "select system_identifier from pg_control_system()"
    with db.connect() as conn, database.connect() as same:
        assert conn.execute(query).fetchone() == same.execute(query).fetchone()
    dsn = pg.from_dsn("postgresql://me:p%40ss@db.example:6543/cf?sslmode=require")
    assert (db.backend, dsn.user, dsn.password, dsn.host, dsn.port, dsn.dbname) == (
        "env", "me", "p@ss", "db.example", 6543, "cf")  # fmt: skip
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(pg.BackendUnavailable, match=r"no Docker engine answers.*Fix: start Dock"):
        pg.start_testcontainers()


def test_a_password_server_builds_and_a_suite_role_reads_the_view(scram: Database) -> None:
    """On the private scram server: nothing to clean up."""
    reader, view, source = map(scratch.scratch_name, ["scram_reader", "dsn_view", "dsn_source"])
    project = DbtProject(scram, target="ci", schema=view, vars={"source_schema": source})
    project.build(fixtures=True, vars={"view_reader_roles": []})
    with scram.connect() as conn:
        scratch.create_login_role(conn, reader, scram)
        conn.execute(f"grant usage on schema {view} to {reader}; grant select on {view}."
                     f"view_build_queue_status to {reader}")  # fmt: skip
    with scram.connect(user=reader) as conn:
        names = [row["system_name"] for row in fetch_rows(conn, view)]
    assert names == SYSTEM_NAMES


def test_the_container_is_pg_15_on_loopback(container_database: Any, monkeypatch: Env) -> None:
    db, image = container_database, "Fix: name a PostgreSQL image Docker has in"
    assert (db.backend, db.host, db.env()["PGHOST"]) == ("testcontainers", pg.LOOPBACK, pg.LOOPBACK)
    with db.connect() as conn:
        assert conn.execute("show server_version").fetchone()[0].startswith("15")
    with pytest.raises(DatabaseError, match="rejected the credentials"):
        db.connect(password="wrong")
    monkeypatch.setenv(pg.IMAGE_ENV, "buildqueue/no-such-image:0")  # Docker answers: an error
    with pytest.raises(DatabaseError, match=image) as raised:
        pg.start_testcontainers()
    assert not isinstance(raised.value, pg.BackendUnavailable)


def test_the_view_schema_is_dbts(database: Database, monkeypatch: Env, tmp_path: Path) -> None:
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    monkeypatch.delenv("BUILDQUEUE_SCHEMA", raising=False)
    for target, schema in [("dev", "buildqueue_dev"), ("prod", "monitoring")]:
        assert DbtProject(database, target=target).view_schema() == schema
    monkeypatch.setenv("BUILDQUEUE_SCHEMA", "From_Env")
    assert DbtProject(database, target="ci").view_schema() == "From_Env"  # case kept
    assert DbtProject(database, target="ci", schema="given").view_schema() == "given"
    (tmp_path / "profiles.yml").write_text(JINJA_PROFILE)  # one's own, with Jinja
    monkeypatch.setenv("DBT_PROFILES_DIR", str(tmp_path))
    monkeypatch.setenv("BUILDQUEUE_TEST_PREFIX", "Team")
    assert DbtProject(database, target="live").view_schema() == "team_views"
    with pytest.raises(DbtError, match=r"does not have a target named 'staging'.*--target live"):
        DbtProject(database, target="staging").view_schema()


def test_the_profile_names_the_password_and_dbt_finds_it(scram: Database) -> None:
    """A password like Jinja gets dbt in, though the profile only names its variable."""
    project, query = DbtProject(scram, "ci", "bqt_private"), "select '{{ target.port }}'"
    text, password = yaml.safe_dump(profile_dict(scram, "ci", "bqt_private")), scram.password
    assert "{{ss}}'\"%" in password and password not in text and PASSWORD_ENV in text
    (compiled,) = project.invoke("compile", "--inline", query).result.result.results
    assert compiled.node.compiled_code == f"select '{scram.port}'"
    project = replace(project, database=replace(scram, dbname="{{ db }}"))
    with pytest.raises(DbtError, match=re.escape("Database '{{ db }}' does not exist")):
        project.invoke("compile", "--inline", query)


def test_the_guard_names_what_a_run_left_behind_or_dropped(database: Database) -> None:
    """Named: a stranger (left alone), a scratch stray (dropped), a pre-existing schema gone."""
    stranger, stray, victim = f"left_{scratch.PREFIX}", *map(scratch.scratch_name, ["s", "v"])
    with database.connect() as conn:
        conn.execute(f"create schema {victim}")
    try:
        with pytest.raises(AssertionError) as raised, scratch.nothing_left_behind(database):  # noqa: SIM117
            with database.connect() as conn:
                conn.execute(f"create schema {stranger}; create role {stranger};"
                             f" create schema {stray}; drop schema {victim}")  # fmt: skip
        assert all(f"{kind} {name} ({what}" in str(raised.value) for kind, name, what in [
            ("schema", stranger, "left behind"), ("role", stranger, "left behind"),
            ("schema", stray, "not dropped by its fixture; dropped now"),
            ("schema", victim, "dropped, it existed before")]), raised.value  # fmt: skip
        assert stray not in scratch.inventory(database)["schema"]
        with pytest.raises(ValueError, match="Fix: use lowercase"):
            scratch.scratch_name("x" * (scratch.NAME_LIMIT - len(scratch.PREFIX)))
    finally:
        scratch.drop_schemas(database, [stranger, victim])
        scratch.drop_roles(database, [stranger])
