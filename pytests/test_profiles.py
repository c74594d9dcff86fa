"""The profile dbt gets: written from a dict, its schema what dbt parsed, no credential.

The schema is written once, in the profile; `DbtProject.view_schema` asks `dbt parse`
where the view goes, so `show` reads where `build` wrote, whatever Jinja the profile uses.
The password reaches dbt only through the environment of the invocation.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from buildqueue.database import Database, free_port, start_embedded
from buildqueue.dbt import PASSWORD_ENV, DbtError, DbtProject, profile_dict

JINJA_PROFILE = """
buildqueue:
  target: live
  outputs:
    live:
      type: postgres
      host: elsewhere
      port: 1
      user: nobody
      dbname: nothing
      schema: "{{ (env_var('BUILDQUEUE_TEST_PREFIX', 'Grafana') ~ '_views') | lower }}"
      threads: 1
"""


@pytest.mark.parametrize(
    ("target", "schema"),
    [("dev", "buildqueue_dev"), ("ci", "buildqueue_ci"), ("prod", "monitoring")],
)
def test_each_target_reads_its_schema_from_the_profile(
    database: Database, monkeypatch: pytest.MonkeyPatch, target: str, schema: str
) -> None:
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    monkeypatch.delenv("BUILDQUEUE_SCHEMA", raising=False)
    assert DbtProject(database, target=target).view_schema() == schema


def test_the_schema_variable_and_the_project_schema_win(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    monkeypatch.setenv("BUILDQUEUE_SCHEMA", "From_Env")
    assert DbtProject(database, target="ci").view_schema() == "From_Env"  # case kept
    assert DbtProject(database, target="ci", schema="given").view_schema() == "given"


def test_a_jinja_schema_of_ones_own_profile_is_where_dbt_builds(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The database comes from --database, the rest (schema Jinja) from one's own profile."""
    (tmp_path / "profiles.yml").write_text(JINJA_PROFILE)
    monkeypatch.setenv("DBT_PROFILES_DIR", str(tmp_path))
    monkeypatch.setenv("BUILDQUEUE_TEST_PREFIX", "Team")
    project = DbtProject(database, target="live")
    assert project.view_schema() == "team_views"
    outcome = project.invoke("compile", "--inline", "select '{{ target.schema }}' as s")
    (compiled,) = outcome.result.result.results
    assert compiled.node.compiled_code == "select 'team_views' as s"
    with pytest.raises(DbtError, match=r"does not have a target named 'staging'.*--target live"):
        DbtProject(database, target="staging").view_schema()


def test_the_profile_names_the_password_and_dbt_finds_it(tmp_path: Path) -> None:
    """On a server that checks passwords, dbt logs in with one that looks like Jinja,
    though the profile only names the variable holding it."""
    password = "pa{{ ss }}'\"%"
    server = start_embedded(tmp_path / "pgdata", password=password, tcp_port=free_port())
    try:
        text = yaml.safe_dump(profile_dict(server, "ci", "bqt_private"))
        assert password not in text and PASSWORD_ENV in text
        project = DbtProject(server, target="ci", schema="bqt_private")
        sql = "select '{{ target.schema }}|{{ target.port }}' as s"
        (compiled,) = project.invoke("compile", "--inline", sql).result.result.results
        assert compiled.node.compiled_code == f"select 'bqt_private|{server.port}' as s"
        with pytest.raises(DbtError, match=re.escape("Database '{{ db }}' does not exist")):
            replace(project, database=replace(server, dbname="{{ db }}")).invoke(
                "compile", "--inline", sql
            )
    finally:
        server.stop()
