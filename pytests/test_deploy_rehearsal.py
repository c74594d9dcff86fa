"""README's deploy section, run as written twice (support.rehearsal), here and on PostgreSQL 15."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from support import crystal_forge
from support import rehearsal as rh
from support.example import EXPECTED_ROWS, SYSTEM_NAMES, as_expected
from support.rehearsal import READER_ROLE, VIEW_SCHEMA, Rehearsal

pytestmark = pytest.mark.first  # minutes long: a worker of its own while the others go on

VIEW = f"{VIEW_SCHEMA}.view_build_queue_status"


@pytest.fixture(scope="module", params=["database", "container_database"])
def rehearsal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rehearsal]:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed, and the README's deploy section uses it")
    try:
        with rh.rehearse(request.getfixturevalue(request.param), tmp_path_factory.mktemp("h")) as r:
            if failed := r.failed_run():
                pytest.fail(f"a README deploy command failed:\n$ {failed.script.strip()}\n(exit"
                            f" {failed.returncode})\n{failed.stdout}{failed.stderr}")  # fmt: skip
            yield r
    except rh.RehearsalUnavailable as error:
        pytest.skip(str(error))


def _rows(conn: psycopg.Connection) -> list[dict]:
    with conn.transaction(force_rollback=True), conn.cursor(row_factory=dict_row) as cur:
        crystal_forge.refresh_reservations(conn)
        rows = cur.execute(f"select * from {VIEW}").fetchall()
    return as_expected(rows)


def test_every_block_ran_and_the_view_has_the_example_rows(rehearsal: Rehearsal) -> None:
    assert any("dbt build" in block for block in rehearsal.blocks), rehearsal.blocks
    assert len(rehearsal.catalogs) == 2  # every block, then every dbt command again
    with rehearsal.database.connect() as conn:
        assert _rows(conn) == EXPECTED_ROWS


FORBIDDEN = {
    **{f"select-{t}": f"select * from public.{t}" for t in crystal_forge.TABLES},
    "replace-view": f"create or replace view {VIEW} as select 1 as nixos_id",
    "drop-view": f"drop view {VIEW}", "create": f"create table {VIEW_SCHEMA}.intruder (id integer)",
}  # fmt: skip


def test_the_reader_role_reads_the_view_and_nothing_else(rehearsal: Rehearsal) -> None:
    with rehearsal.database.connect() as conn, conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(READER_ROLE)))
        names = [row[0] for row in conn.execute(f"select system_name from {VIEW}")]
        assert names == SYSTEM_NAMES
        for name, statement in FORBIDDEN.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)
                pytest.fail(f"the reader may {name}")


def test_the_deploy_leaves_crystal_forges_indexes_as_they_were(rehearsal: Rehearsal) -> None:
    """None added (so none duplicated), none changed or dropped."""
    with rehearsal.database.connect() as conn:
        assert rh.source_indexes(conn) == rehearsal.indexes_before


def test_the_second_deploy_changes_nothing(rehearsal: Rehearsal) -> None:
    first, second = rehearsal.catalogs
    assert any(row[1] == "view_build_queue_status" for row in first["relations"])
    assert {k: set(first[k]) ^ set(second[k]) for k in first if first[k] != second[k]} == {}


def test_the_build_prints_the_status_mapping_the_readme_shows(rehearsal: Rehearsal) -> None:
    shown = [line for block in rh.code_blocks("text") for line in block.splitlines()]
    mapping = next(line for line in shown if line.startswith("Crystal Forge statuses"))
    assert mapping in "\n".join(run.stdout + run.stderr for run in rehearsal.runs)


def test_view_sql_recreates_the_same_view(rehearsal: Rehearsal, tmp_path: Path) -> None:
    """The README's view-sql output, applied with psql; last, as it replaces the view."""
    (printed,) = [run for run in rehearsal.runs if "view-sql" in run.script]
    env = rh.operator_environment(rehearsal.database, tmp_path)
    applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], text=True,
                             input=printed.stdout, env=env, capture_output=True)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    with rehearsal.database.connect() as conn:
        assert _rows(conn) == EXPECTED_ROWS
        assert _views(rh.catalog(conn)) == _views(rehearsal.catalogs[1])  # grants included


def _views(snapshot: dict[str, list[tuple]]) -> list[tuple]:
    return [row for row in snapshot["relations"] if row[2] == "v"]
