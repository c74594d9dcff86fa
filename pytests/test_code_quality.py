"""The code is held to its linters as part of the one test command: ruff for Python,
sqlfluff for SQL; and the macros' catalogue and copied dbt materialization stay in step."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import dbt.include.global_project
import yaml

from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.paths import PROJECT_DIR
from support.sql_lint import dbt_templater_violations, emitted_sql, emitted_sql_violations

RUFF = Path(sys.executable).with_name("ruff")


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUFF), *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
    )


def test_ruff_lint() -> None:
    result = _ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


MACROS_DIR = PROJECT_DIR / "macros"
_MACRO_START = re.compile(r"\{%-?\s*(macro|materialization)\s+(\w+)(?:,\s*adapter='(\w+)')?")


def _macros_in_file_order() -> list[str]:
    """Every macro's manifest name, by file (folders and files alphabetical), in file order."""
    names = []
    for path in sorted(MACROS_DIR.rglob("*.sql")):
        for kind, name, adapter in _MACRO_START.findall(path.read_text()):
            names.append(name if kind == "macro" else f"materialization_{name}_{adapter}")
    return names


def test_macros_yml_follows_the_folders() -> None:
    """macros/_macros.yml lists every macro once, in the order of the folders and files."""
    documented = [
        entry["name"]
        for entry in yaml.safe_load((MACROS_DIR / "_macros.yml").read_text())["macros"]
    ]
    assert documented == _macros_in_file_order()


def _statements(jinja: str) -> list[str]:
    """Jinja and SQL without comments: one whitespace-normalised entry per non-blank line."""
    text = re.sub(r"\{#.*?#\}|/\*.*?\*/|--[^\n]*", "", jinja, flags=re.DOTALL)
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def test_view_materialization_is_dbts_plus_the_in_place_branch() -> None:
    """macros/materializations/view.sql is dbt's, statement for statement, but for its branch.

    Its header names the dbt-adapters file it follows; when an upgrade changes that file,
    this fails, so the copy is re-diffed instead of silently running an old dbt.
    """
    upstream_path = Path(dbt.include.global_project.__file__).parent / (
        "macros/materializations/models/view.sql"
    )
    ours = (MACROS_DIR / "materializations" / "view.sql").read_text()
    ours = ours[ours.index("{%- materialization") : ours.index("{%- endmaterialization -%}")]
    branch_start = ours.index("{% if existing_relation is not none and existing_relation.is_view")
    branch_end = ours.index("{% else %}", branch_start) + len("{% else %}")
    outer_endif = ours.rindex("{% endif %}", 0, ours.index("{% set should_revoke"))
    stock = (
        ours[:branch_start] + ours[branch_end:outer_endif] + "\n" + ours[outer_endif + 11 :]
    ).replace("adapter='postgres'", "default")
    upstream = upstream_path.read_text()
    upstream = upstream[: upstream.index("{%- endmaterialization -%}")]
    assert _statements(stock) == _statements(upstream), (
        f"{upstream_path} (dbt-adapters {version('dbt-adapters')}) is no longer what "
        "macros/materializations/view.sql follows: apply its changes to our copy, keep the "
        "in-place branch, and update the version in the copy's header."
    )


def test_sqlfluff_lint(project: DbtProject, build: DbtOutcome) -> None:
    """Zero sqlfluff violations: models, macros, tests and analyses (dbt templater, against
    the session's database), and the SQL the macros return (support/sql_lint.py)."""
    problems = dbt_templater_violations(project) + emitted_sql_violations(emitted_sql(project))
    assert problems == [], f"{len(problems)} sqlfluff violation(s):\n" + "\n".join(problems)
