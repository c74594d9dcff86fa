"""Where the CLI reads the view: the target's schema, taken from the profile dbt uses.

The schema is written once, in the profile; `DbtProject.view_schema` resolves its
`env_var(...)` calls the way dbt does, so `show` and `demo` read where `build` wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from buildqueue.database import Database
from buildqueue.dbt import PROFILES_DIR_ENV, DbtError, DbtProject


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
    (tmp_path / "profiles.yml").write_text(
        "buildqueue:\n  target: live\n  outputs:\n    live:\n      type: postgres\n"
        "      schema: grafana_views\n"
    )
    monkeypatch.setenv(PROFILES_DIR_ENV, str(tmp_path))
    assert DbtProject(database, target="live").view_schema() == "grafana_views"
    with pytest.raises(DbtError, match=r"Cannot read the schema of target 'staging'.*Fix: use a"):
        DbtProject(database, target="staging").view_schema()
