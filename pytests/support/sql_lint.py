"""sqlfluff over the project's SQL, as `.sqlfluff` states the house style.

Two passes, each returning one ``file:line rule message`` line per violation:

* `dbt_templater_violations`: sqlfluff's CLI with the dbt templater over models, macros,
  tests and analyses, compiled against the session's database (the status ids are looked
  up there, `is_incremental()` sees the built samples table). It runs in a subprocess:
  the templater drives dbt's internals in-process, which must not meet the suite's own
  dbtRunner. dbt's target/ goes to a temporary folder, so the session's docs are untouched.
* `emitted_sql_violations`: the dbt templater renders a macro file to nothing, so the SQL
  the macros return (a query a macro runs is a macro of its own, so it is among them) is
  rendered by `dbt compile --inline` of `macro_sql.sql` and linted with the raw templater,
  all rules but layout (the emitted text's whitespace is Jinja's), RF06 (`adapter.quote`
  quotes every identifier on purpose) and CV06 (fragments that dbt's statement()
  terminates).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR

SQLFLUFF = Path(sys.executable).with_name("sqlfluff")
LINTED_FOLDERS = ("models", "macros", "tests", "analyses")
MACRO_SQL = Path(__file__).with_name("macro_sql.sql")
_PIECE = re.compile(r"(?m)^-- lint: (.+)$")
EMITTED_SQL_CONFIG = """
[sqlfluff]
templater = raw
large_file_skip_byte_limit = 0
exclude_rules = ST06, layout, RF06, CV06

[sqlfluff:rules:references.keywords]
# name and version: columns of Crystal Forge's own tables, in the fixtures' DDL
ignore_words = time, name, version
"""


def dbt_templater_violations(
    project: DbtProject, paths: tuple[str, ...] = LINTED_FOLDERS
) -> list[str]:
    """`sqlfluff lint` with the dbt templater, against ``project``'s database and vars."""
    with tempfile.TemporaryDirectory(prefix="sqlfluff-") as scratch:
        context = Path(scratch) / "context.cfg"
        context.write_text(_vars_section(project))
        env = {
            **os.environ,
            # the private profile dbt itself gets: this database, this target only
            "DBT_PROFILES_DIR": str(project.profiles_dir),
            "DBT_TARGET": project.target,
            "DBT_TARGET_PATH": str(Path(scratch) / "target"),
            "DBT_LOG_PATH": str(Path(scratch) / "logs"),
        }
        result = subprocess.run(
            [str(SQLFLUFF), "lint", "--format", "json", "--config", str(context), *paths],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise AssertionError(
            f"sqlfluff lint could not run (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    return [
        f"{file['filepath']}:{violation['start_line_no']} {violation['code']} "
        f"{violation['description']}"
        for file in json.loads(result.stdout)
        for violation in file["violations"]
    ]


def _vars_section(project: DbtProject) -> str:
    """The project's vars as the dbt templater's `context` section (scalars only)."""
    lines = ["[sqlfluff:templater:dbt:context]"]
    for name, value in project.vars.items():
        if not isinstance(value, str | int | bool):
            raise TypeError(f"var {name}: only scalar vars can reach sqlfluff, got {value!r}")
        lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


def emitted_sql(project: DbtProject) -> list[tuple[str, str]]:
    """(label, SQL) for each macro call in macro_sql.sql, rendered by dbt for ``project``."""
    outcome = project.invoke(
        "compile", "--inline", MACRO_SQL.read_text(), vars={"view_reader_roles": ["grafana"]}
    )
    compiled = outcome.result.result.results[0].node.compiled_code
    parts = _PIECE.split(compiled)
    return [
        (label, sql.strip() + "\n") for label, sql in zip(parts[1::2], parts[2::2], strict=True)
    ]


def emitted_sql_violations(pieces: list[tuple[str, str]]) -> list[str]:
    """Lint each rendered piece: the project's rules, minus what only Jinja decides."""
    from sqlfluff.core import FluffConfig, Linter

    config = FluffConfig.from_strings((PROJECT_DIR / ".sqlfluff").read_text(), EMITTED_SQL_CONFIG)
    linter = Linter(config=config)
    problems = []
    for label, sql in pieces:
        lines = sql.splitlines()
        for violation in linter.lint_string(sql, fname=label).get_violations():
            line = lines[violation.line_no - 1].strip() if violation.line_no else ""
            problems.append(
                f"macros/{label}: line {violation.line_no} of its SQL "
                f"{violation.rule_code()} {violation.desc()} | {line[:120]}"
            )
    return problems
