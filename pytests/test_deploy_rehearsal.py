"""The README's deploy section, run as written on a database in Crystal Forge's shape.

Every `bash` block of "Deploying to a live Crystal Forge database" runs with bash,
unchanged, against a fresh database holding Crystal Forge's five tables (its columns,
keys, foreign keys, index names and status numbering) and the spec's example; then
the blocks' dbt commands run a second time (support.rehearsal). README and reality
cannot drift: a command that stops working, or works differently from what the section
says, fails here. Checked afterwards: the view's rows, the reader role's reach, the
indexes (none duplicated, Crystal Forge's own untouched), that the second deploy changed
nothing in the catalog, and the status mapping line the section shows.

It runs on the session's database (embedded PostgreSQL 18 by default) and, where the
suite provides the `container_database` fixture, on a PostgreSQL 15 container too.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.database import Database
from support import crystal_forge
from support.example import EXPECTED_ROWS
from support.rehearsal import (
    READER_ROLE,
    README,
    VIEW,
    VIEW_SCHEMA,
    Rehearsal,
    RehearsalUnavailable,
    code_blocks,
    deploy_section,
    operator_environment,
    rehearse,
    source_indexes,
)

pytestmark = pytest.mark.last  # minutes long: after the checks of the session's example

QUALIFIED_VIEW = f"{VIEW_SCHEMA}.{VIEW}"
VIEW_SQL_COMMAND = "view-sql"
"""The CLI command that prints the view's statement for SQL migrations."""
STATUS_LINE_MARK = "Crystal Forge statuses"
"""How the README's status mapping example (a `text` block) starts."""


@pytest.fixture(scope="module", params=["database", "container_database"])
def rehearsal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rehearsal]:
    """The rehearsal on one server: the session's database, or a PostgreSQL 15 container."""
    if shutil.which("psql") is None:
        pytest.skip(
            "psql is not installed, and the README's deploy section uses it. Fix: install "
            "postgresql-client (./run test does so when run as root on Debian)"
        )
    try:
        server: Database = request.getfixturevalue(request.param)
    except pytest.FixtureLookupError:
        pytest.skip(
            f"no '{request.param}' fixture in this suite: the PostgreSQL 15 container "
            "rehearsal runs once pytests/conftest.py provides it"
        )
    try:
        with rehearse(server, tmp_path_factory.mktemp("rehearsal")) as result:
            yield result
    except RehearsalUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def deployed(rehearsal: Rehearsal) -> Rehearsal:
    """The rehearsal, provided every block and command succeeded (else the failure)."""
    failed = rehearsal.failed_run()
    if failed is not None:
        pytest.fail(
            f"a README deploy command failed on {rehearsal.server.describe()}:\n{failed.describe()}"
        )
    return rehearsal


@pytest.fixture
def conn(deployed: Rehearsal) -> Iterator[psycopg.Connection]:
    with deployed.database.connect() as connection:
        yield connection


def test_readme_blocks_run_as_written(
    deployed: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every block succeeded, twice for the dbt commands; the time is printed."""
    assert len(deployed.first_deploy) == len(deployed.blocks)
    assert deployed.second_deploy, "the blocks hold no dbt command to run again"
    lines = [
        f"deploy rehearsal on {deployed.server.backend} PostgreSQL "
        f"{_server_version(deployed)}: {deployed.seconds:.1f} s in all "
        f"({len(deployed.blocks)} README blocks, then {len(deployed.second_deploy)} dbt "
        "commands again; a shared machine)"
    ]
    for label, runs in (("first", deployed.first_deploy), ("again", deployed.second_deploy)):
        for run in runs:
            commands = " && ".join(line.strip() for line in run.script.strip().splitlines())
            lines.append(f"  {label}: {run.seconds:5.1f} s  {commands}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_the_view_has_the_example_rows(conn: psycopg.Connection) -> None:
    with conn.transaction(force_rollback=True), conn.cursor(row_factory=dict_row) as cur:
        crystal_forge.refresh_reservations(conn)
        rows = cur.execute(f"select * from {QUALIFIED_VIEW}").fetchall()
    assert [{k: row[k] for k in EXPECTED_ROWS[0]} for row in rows] == EXPECTED_ROWS


def test_reader_role_reads_the_view(conn: psycopg.Connection) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(READER_ROLE)))
        names = [row[0] for row in conn.execute(f"select system_name from {QUALIFIED_VIEW}")]
    assert names == [row["system_name"] for row in EXPECTED_ROWS]


FORBIDDEN = {
    **{
        f"select-{table}": f"select * from {crystal_forge.SOURCE_SCHEMA}.{table}"
        for table in crystal_forge.TABLES
    },
    "drop-view": f"drop view {QUALIFIED_VIEW}",
    "replace-view": f"create or replace view {QUALIFIED_VIEW} as select 1 as nixos_id",
    "rename-view": f"alter view {QUALIFIED_VIEW} rename to hijacked",
    "create-in-view-schema": f"create table {VIEW_SCHEMA}.intruder (id integer)",
}
"""What the reader role must be refused: Crystal Forge's tables, and changing the view."""


@pytest.mark.parametrize("statement", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_reader_role_reaches_nothing_else(conn: psycopg.Connection, statement: str) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(READER_ROLE)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(statement)


def test_no_index_is_duplicated(conn: psycopg.Connection) -> None:
    """No valid index on a table repeats another's keys (in order), method and predicate.

    Crystal Forge's `idx_build_reservations_heartbeat` and a second `(heartbeat_at)`
    index under another name is what this catches; so is an index that only adds
    INCLUDE columns to another that has them all. The primary key (id) and the covering
    `(id) include (status_id) where derivation_type = 'package'` index share their keys
    but not what they answer (the package path's index-only scan), so the predicate
    counts: keys alone would call every covering index a duplicate of its key.
    """
    found = sorted(
        (name, index)
        for name, index in crystal_forge.indexes(conn, crystal_forge.SOURCE_SCHEMA).items()
        if index.valid and index.table in crystal_forge.TABLES
    )
    duplicates = [
        f"{a.table}: {a_name} and {b_name} are both ({', '.join(a.keys)}) {a.method}"
        f"{f' where {a.predicate}' if a.predicate else ''}"
        f" (include: {', '.join(a.include) or '-'} / {', '.join(b.include) or '-'})"
        for (a_name, a), (b_name, b) in combinations(found, 2)
        if (a.table, a.keys, a.method, a.predicate) == (b.table, b.keys, b.method, b.predicate)
        and (set(a.include) <= set(b.include) or set(b.include) <= set(a.include))
    ]
    assert not duplicates, "\n".join(duplicates)


def test_crystal_forge_indexes_are_unchanged(deployed: Rehearsal, conn: psycopg.Connection) -> None:
    now = source_indexes(conn)
    changed = {
        name: (definition, now.get(name))
        for name, definition in deployed.crystal_forge_indexes.items()
        if now.get(name) != definition
    }
    assert not changed, changed


def test_second_deploy_changes_nothing(deployed: Rehearsal) -> None:
    first, second = deployed.catalog_after_first, deployed.catalog_after_second
    assert first["views"], f"no view in the catalog snapshot: {first}"
    differences = {
        kind: {
            "gone": sorted(set(first[kind]) - set(second[kind])),
            "new": sorted(set(second[kind]) - set(first[kind])),
        }
        for kind in first
        if first[kind] != second[kind]
    }
    assert not differences, differences


def test_build_prints_the_status_mapping(deployed: Rehearsal) -> None:
    """The line the README shows as an example is what the build printed."""
    section = deploy_section(README.read_text())
    examples = [
        line.strip()
        for block in code_blocks(section, "text")
        for line in block.splitlines()
        if line.startswith(STATUS_LINE_MARK)
    ]
    assert examples, f"the README's deploy section shows no '{STATUS_LINE_MARK}' line"
    printed = [line.strip() for line in deployed.output().splitlines() if STATUS_LINE_MARK in line]
    # dbt may put a time in front of what a macro logs: compare what follows it
    assert any(line.endswith(examples[0]) for line in printed), (
        f"expected {examples[0]!r}; the build printed {printed!r}"
    )


def test_view_sql_applies_and_gives_the_same_view(deployed: Rehearsal, tmp_path: Path) -> None:
    """The statement the README's view-sql block prints, applied with psql as a migration.

    It must recreate the very view dbt built (same definition) with the example's rows.
    Last of this module's checks: it replaces the view (by the same definition, if right).
    """
    printed = [run for run in deployed.first_deploy if VIEW_SQL_COMMAND in run.script]
    assert printed, f"no README deploy block runs {VIEW_SQL_COMMAND}"
    env = operator_environment(deployed.database, tmp_path)
    for run in printed:
        assert "create or replace view" in run.stdout.lower(), run.describe()
        applied = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
            input=run.stdout,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert applied.returncode == 0, f"psql: {applied.stdout}{applied.stderr}\n{run.stdout}"
    with deployed.database.connect() as conn:
        definition = conn.execute(
            "select pg_get_viewdef(%s::regclass)", [QUALIFIED_VIEW]
        ).fetchone()[0]
        with conn.transaction(force_rollback=True), conn.cursor(row_factory=dict_row) as cur:
            crystal_forge.refresh_reservations(conn)
            rows = cur.execute(f"select * from {QUALIFIED_VIEW}").fetchall()
    built = [row for row in deployed.catalog_after_second["views"] if row[1] == VIEW]
    assert [definition] == [row[2] for row in built]
    assert [{k: row[k] for k in EXPECTED_ROWS[0]} for row in rows] == EXPECTED_ROWS


def _server_version(rehearsal: Rehearsal) -> str:
    with rehearsal.database.connect() as connection:
        return str(connection.execute("show server_version").fetchone()[0]).split()[0]


def test_readme_section_is_found() -> None:
    """The section and its bash blocks exist (without them the rehearsal tests nothing)."""
    blocks = code_blocks(deploy_section(Path(README).read_text()), "bash")
    assert any("dbt build" in block for block in blocks), blocks
