"""The profile: dbt renders it, and dbt gets it with real values, privately.

The schema is written once, in the profile; `DbtProject.view_schema` is the target's
schema as dbt's own renderer makes it, so `show` and `demo` read where `build` wrote,
whatever Jinja the profile uses. The credentials reach dbt as dbt-core's test fixtures
hand them over: a profiles.yml holding the database's values in a private folder.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from buildqueue.database import Database
from buildqueue.dbt import DbtError, DbtProject
from buildqueue.paths import PROJECT_DIR, SCRATCH_DIR
from buildqueue.profile import (
    PROFILES_DIR_ENV,
    PROFILES_FILE,
    SCHEMA_MEMO,
    read_source,
    render_target,
)

PREFIX_ENV = "BUILDQUEUE_TEST_SCHEMA_PREFIX"
JINJA_PROFILE = """
buildqueue:
  target: live
  outputs:
    live:
      type: postgres
      host: "{{ env_var('PGHOST') }}"
      port: "{{ env_var('PGPORT') | as_number }}"
      user: "{{ env_var('PGUSER') }}"
      password: "{{ env_var('PGPASSWORD', '') }}"
      dbname: "{{ env_var('PGDATABASE') }}"
      schema: "{{ (env_var('PREFIX_ENV', 'Grafana') ~ '_views') | lower }}"
      threads: 1
""".replace("PREFIX_ENV", PREFIX_ENV)


@pytest.mark.parametrize(
    ("target", "schema"),
    [("dev", "buildqueue_dev"), ("ci", "buildqueue_ci"), ("prod", "monitoring")],
)
def test_each_target_reads_its_schema_from_the_profile(
    database: Database, monkeypatch: pytest.MonkeyPatch, target: str, schema: str
) -> None:
    monkeypatch.delenv(PROFILES_DIR_ENV, raising=False)
    monkeypatch.delenv("BUILDQUEUE_SCHEMA", raising=False)
    assert DbtProject(database, target=target).view_schema() == schema


def test_the_schema_variable_and_the_project_schema_win(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PROFILES_DIR_ENV, raising=False)
    monkeypatch.setenv("BUILDQUEUE_SCHEMA", "from_env")
    assert DbtProject(database, target="ci").view_schema() == "from_env"
    assert DbtProject(database, target="ci", schema="given").view_schema() == "given"


def test_a_profile_of_ones_own_is_read(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / PROFILES_FILE).write_text(
        "buildqueue:\n  target: live\n  outputs:\n    live:\n      type: postgres\n"
        "      schema: grafana_views\n"
    )
    monkeypatch.setenv(PROFILES_DIR_ENV, str(tmp_path))
    assert DbtProject(database, target="live").view_schema() == "grafana_views"
    with pytest.raises(
        DbtError, match=r"does not have a target named 'staging'.*Fix: use a target"
    ):
        DbtProject(database, target="staging").view_schema()


def test_a_jinja_schema_is_where_dbt_builds(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Jinja beyond a bare env_var(): the schema is what dbt itself makes of it, as
    `target.schema` in a real dbt command says."""
    (tmp_path / PROFILES_FILE).write_text(JINJA_PROFILE)
    monkeypatch.setenv(PROFILES_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(PREFIX_ENV, raising=False)
    assert DbtProject(database, target="live").view_schema() == "grafana_views"
    monkeypatch.setenv(PREFIX_ENV, "Team")
    project = DbtProject(database, target="live")
    assert project.view_schema() == "team_views"
    outcome = project.invoke("compile", "--inline", "select '{{ target.schema }}' as s")
    (compiled,) = outcome.result.result.results
    assert compiled.node.compiled_code == "select 'team_views' as s"


def test_dbt_gets_the_database_in_a_private_profile(database: Database) -> None:
    """The password (Jinja-looking, too) is written only to a 0600 file in a 0700 folder,
    and dbt's renderer reads back exactly the database's values."""
    odd = replace(database, password="pa{{ ss }}'\"%")
    folder = DbtProject(odd, target="ci", schema="bqt_private").profiles_dir
    path = folder / PROFILES_FILE
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rendered = render_target(path, read_source(path), "ci", {}, {})
    expected = {
        "host": odd.host,
        "port": odd.port,
        "user": odd.user,
        "password": odd.password,
        "dbname": odd.dbname,
        "schema": "bqt_private",
    }
    assert {key: rendered.settings[key] for key in expected} == expected
    assert odd.password not in (SCHEMA_MEMO.read_text() if SCHEMA_MEMO.exists() else "")


def test_a_process_removes_the_profiles_it_wrote(database: Database) -> None:
    script = (
        "from buildqueue.database import Database\n"
        "from buildqueue.dbt import DbtProject\n"
        f"db = Database(**{_fields(database)!r})\n"
        "print(DbtProject(db, target='ci').profiles_dir)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    folder = Path(completed.stdout.strip())
    assert folder.parent.parent == SCRATCH_DIR, folder
    assert not folder.exists() and not folder.parent.exists()


def test_show_needs_no_dbt_while_the_profile_is_unchanged(database: Database) -> None:
    """The second lookup of a schema, in a new process, imports no dbt (seconds saved on
    every `./run show`); a changed variable the schema reads is noticed."""
    script = (
        "import sys\n"
        "from buildqueue.database import Database\n"
        "from buildqueue.dbt import DbtProject\n"
        f"db = Database(**{_fields(database)!r})\n"
        "print(DbtProject(db, target='ci').view_schema(), 'dbt.config' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {PROFILES_DIR_ENV, "BUILDQUEUE_SCHEMA"}}

    def lookup(**extra: str) -> list[str]:
        completed = subprocess.run(
            [sys.executable, "-c", script],
            cwd=PROJECT_DIR,
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        )
        return completed.stdout.split()

    lookup()
    assert lookup() == ["buildqueue_ci", "False"]
    assert lookup(BUILDQUEUE_SCHEMA="bqt_elsewhere") == ["bqt_elsewhere", "True"]
    assert lookup(BUILDQUEUE_SCHEMA="bqt_elsewhere") == ["bqt_elsewhere", "False"]


def _fields(database: Database) -> dict[str, object]:
    return {
        "host": database.host,
        "port": database.port,
        "user": database.user,
        "password": database.password,
        "dbname": database.dbname,
        "backend": database.backend,
    }


def test_the_written_profile_is_a_profile(database: Database) -> None:
    """One profile, one target: the one asked for."""
    folder = DbtProject(database, target="prod").profiles_dir
    profiles = yaml.safe_load((folder / PROFILES_FILE).read_text())
    assert list(profiles) == ["buildqueue"]
    assert profiles["buildqueue"]["target"] == "prod"
    assert list(profiles["buildqueue"]["outputs"]) == ["prod"]
