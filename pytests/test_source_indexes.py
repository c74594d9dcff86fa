"""`dbt run-operation create_source_indexes`: indexes known by definition, not by name.

The view's plans rely on the spec's indexes, the covering package index and the
(derivation_type, status_id) statistic with its statistics target (docs/performance.md).
On a live Crystal Forge database some of them already exist under Crystal Forge's own
names (`idx_build_reservations_heartbeat`, `idx_build_reservations_nixos`, the primary key
of derivation_dependencies). The operation must report what covers each recommendation,
create only what is truly missing (also with `concurrently`, which cannot run in a
transaction), change nothing when run again, never take a look-alike (another predicate,
another leading column, an expression, an invalid index) for a covering index, and stop
with the fix when source_schema points nowhere.

Every test works in its own scratch schema (`bqt_<session>_source_indexes`), dropped at
teardown.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.perf.catalog import drop_secondary_indexes
from support.crystal_forge import Index, indexes
from support.scratch import ScratchSchemas, scratch_name

SCHEMA = scratch_name("source_indexes")
"""This module's scratch schema: created for each test and dropped at its teardown."""
STATISTIC = "stx_derivations_type_status"
STATISTICS_TARGET = 1000
AUTOCOMMIT_ENV = "BUILDQUEUE_AUTOCOMMIT"

CRYSTAL_FORGE_INDEXES = {
    "idx_build_reservations_heartbeat": "build_reservations (heartbeat_at)",
    "idx_build_reservations_nixos": "build_reservations (nixos_derivation_id)",
    "idx_build_reservations_worker": "build_reservations (worker_id)",
}
"""Crystal Forge's own secondary indexes on the tables the view reads."""

MISSING_ON_CRYSTAL_FORGE = ["idx_derivations_package_status", "idx_derivations_type_status"]
"""What Crystal Forge's schema lacks: the queued-systems and the covering package index."""

PACKAGE_STATUS_LABEL = "derivations (id) include (status_id) where derivation_type = 'package'"


def statistics_targets(conn: psycopg.Connection, schema: str) -> dict[str, int | None]:
    rows = conn.execute(
        "select stxname, stxstattarget from pg_statistic_ext where stxnamespace = %s::regnamespace",
        [schema],
    ).fetchall()
    return dict(rows)


class Operation:
    """Runs the operation in-process, as `dbt run-operation create_source_indexes --vars
    '{source_schema: SCHEMA}' --args ARGS` does, and returns (succeeded, what it printed).

    Every test uses the same source_schema (this module's SCHEMA), so dbt parses the
    project once and later runs reuse it (a run takes about a second instead of ten)."""

    def __init__(self, database: Database, capfd: pytest.CaptureFixture[str]) -> None:
        self.project = DbtProject(database, target="ci", quiet=False)
        self.capfd = capfd

    def __call__(self, args: str = "{}") -> tuple[bool, str]:
        self.capfd.readouterr()
        outcome = self.project.invoke(
            "run-operation",
            "create_source_indexes",
            "--args",
            args,
            vars={"source_schema": SCHEMA},
            check=False,
        )
        captured = self.capfd.readouterr()
        return outcome.success, captured.out + captured.err


@pytest.fixture
def operation(database: Database, capfd: pytest.CaptureFixture[str]) -> Operation:
    return Operation(database, capfd)


def report(output: str) -> dict[str, str]:
    """The operation's report lines, recommendation label -> what it says of it."""
    lines = {}
    for line in output.splitlines():
        _, marker, rest = line.partition("    ")  # dbt's timestamp, then the indented line
        if marker and ": " in rest:
            label, _, verdict = rest.partition(": ")
            lines[label] = verdict
    return lines


@pytest.fixture
def schema(database: Database, scratch_schema: ScratchSchemas) -> Iterator[str]:
    """SCHEMA holding Crystal Forge's tables and keys, no more; dropped afterwards."""
    project = DbtProject(database, target="ci")
    with database.connect() as conn:
        project.invoke(  # the operation's vars: dbt parses the project once for all
            "run-operation",
            "create_crystal_forge_tables",
            "--args",
            f"{{schema: {scratch_schema('source_indexes')}}}",
            vars={"source_schema": SCHEMA},
        )
        drop_secondary_indexes(conn, SCHEMA)
        conn.execute(sql.SQL("drop statistics {}").format(sql.Identifier(SCHEMA, STATISTIC)))
        yield SCHEMA


@pytest.fixture
def crystal_forge(database: Database, schema: str) -> Iterator[psycopg.Connection]:
    """The scratch schema with Crystal Forge's own indexes, as a live database has them."""
    with database.connect() as conn:
        for name, on in CRYSTAL_FORGE_INDEXES.items():
            table, columns = on.split(" ", 1)
            conn.execute(
                sql.SQL("create index {} on {} {}").format(
                    sql.Identifier(name), sql.Identifier(schema, table), sql.SQL(columns)
                )
            )
        yield conn


def duplicated(found: dict[str, Index]) -> list[tuple[str, str]]:
    """Pairs of indexes on one table with the same key columns and predicate."""
    names = sorted(found)
    return [
        (first, second)
        for position, first in enumerate(names)
        for second in names[position + 1 :]
        if (found[first].table, found[first].keys, found[first].predicate)
        == (found[second].table, found[second].keys, found[second].predicate)
    ]


def test_dry_run_reports_crystal_forge_indexes_as_covering(
    schema: str, crystal_forge: psycopg.Connection, operation: Operation
) -> None:
    before = indexes(crystal_forge, schema)
    ok, output = operation("{concurrently: true, dry_run: true}")
    assert ok, output
    lines = report(output)
    assert lines["build_reservations (heartbeat_at)"] == (
        "covered by idx_build_reservations_heartbeat (btree (heartbeat_at))"
    ), output
    assert lines["build_reservations (nixos_derivation_id)"] == (
        "covered by idx_build_reservations_nixos (btree (nixos_derivation_id))"
    ), output
    assert lines["derivation_dependencies (derivation_id)"] == (
        "covered by derivation_dependencies_pkey "
        "(primary key, btree (derivation_id, depends_on_id))"
    ), output
    assert lines["derivations (derivation_type, status_id)"] == (
        'missing: create index concurrently if not exists "idx_derivations_type_status" '
        f'on "{schema}"."derivations" (derivation_type, status_id);'
    ), output
    assert lines[PACKAGE_STATUS_LABEL].startswith(
        'missing: create index concurrently if not exists "idx_derivations_package_status"'
    ), output
    statistic = next(verdict for label, verdict in lines.items() if label.startswith("statistics"))
    assert statistic.startswith(
        f'missing: create statistics if not exists "{schema}"."{STATISTIC}"'
    )
    assert f"set statistics {STATISTICS_TARGET};" in statistic
    assert "5 indexes recommended: 3 covered by existing ones, 2 missing." in output, output
    assert indexes(crystal_forge, schema) == before
    assert statistics_targets(crystal_forge, schema) == {}


@pytest.mark.parametrize("concurrently", [False, True])
def test_creates_only_what_is_missing_and_a_second_run_changes_nothing(
    database: Database,
    schema: str,
    crystal_forge: psycopg.Connection,
    concurrently: bool,
    operation: Operation,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = indexes(crystal_forge, schema)
    if concurrently:  # as the docs say to run it: autocommit on for this command only
        monkeypatch.setenv(AUTOCOMMIT_ENV, "true")
    args = f"{{concurrently: {str(concurrently).lower()}}}"

    ok, output = operation(args)
    assert ok, output
    after = indexes(crystal_forge, schema)
    assert sorted(set(after) - set(before)) == MISSING_ON_CRYSTAL_FORGE, output
    assert {name: after[name] for name in before} == before  # nothing dropped or changed
    assert after["idx_derivations_type_status"] == Index(
        "derivations", ("derivation_type", "status_id"), (), None, True
    )
    assert after["idx_derivations_package_status"] == Index(
        "derivations", ("id",), ("status_id",), "(derivation_type = 'package'::text)", True
    )
    assert duplicated(after) == []
    assert statistics_targets(crystal_forge, schema) == {STATISTIC: STATISTICS_TARGET}
    lines = report(output)
    assert (
        lines["derivations (derivation_type, status_id)"] == "created: idx_derivations_type_status"
    )
    assert "analyzed: derivations" in output, output

    ok, output = operation(args)
    assert ok, output
    assert indexes(crystal_forge, schema) == after
    assert statistics_targets(crystal_forge, schema) == {STATISTIC: STATISTICS_TARGET}
    verdicts = report(output)
    assert len(verdicts) == 6 and all(v.startswith("covered by ") for v in verdicts.values()), (
        output
    )
    assert verdicts[PACKAGE_STATUS_LABEL] == (
        "covered by idx_derivations_package_status "
        "(btree (id) INCLUDE (status_id) WHERE (derivation_type = 'package'::text))"
    ), output
    assert "5 indexes recommended: 5 covered by existing ones, 0 created." in output, output
    assert "analyzed" not in output, output


LOOK_ALIKES = (
    # another leading column (and no primary key to cover derivation_id)
    "alter table derivation_dependencies drop constraint derivation_dependencies_pkey",
    "create index reversed on derivation_dependencies (depends_on_id, derivation_id)",
    # another predicate, an expression, another operator class
    "create index systems on derivations (derivation_type, status_id) "
    "where derivation_type = 'nixos'",
    "create index type_lower on derivations (lower(derivation_type), status_id)",
    "create index type_pattern on derivations (derivation_type text_pattern_ops, status_id)",
    "create index system_statuses on derivations (id) include (status_id) "
    "where derivation_type = 'nixos'",
    "create index id_type on derivations (id, derivation_type)",  # status_id not in it
    # not a btree
    "create index heartbeat_hash on build_reservations using hash (heartbeat_at)",
    # a failed create index concurrently leaves an invalid index behind (below)
    "insert into build_reservations (worker_id, derivation_id, nixos_derivation_id) "
    "values ('w', 1, 7), ('w', 2, 7)",
)


def test_look_alikes_do_not_cover(database: Database, schema: str, operation: Operation) -> None:
    """Another leading column, another predicate, an expression, another operator class,
    a hash index, an invalid index: none serves the view's queries, so none counts."""
    with database.connect(options=f"-c search_path={schema}") as conn:
        for statement in LOOK_ALIKES:
            conn.execute(statement)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "create unique index concurrently nixos_broken "
                "on build_reservations (nixos_derivation_id)"
            )
        assert indexes(conn, schema)["nixos_broken"].valid is False

        ok, output = operation("{dry_run: true}")
        assert ok, output
        lines = report(output)
        for label in (
            "derivation_dependencies (derivation_id)",
            "derivations (derivation_type, status_id)",
            "build_reservations (nixos_derivation_id)",
            "build_reservations (heartbeat_at)",
            PACKAGE_STATUS_LABEL,
        ):
            assert lines[label].startswith("missing: create index if not exists"), output
        assert "5 indexes recommended: 0 covered by existing ones, 5 missing." in output, output


EQUIVALENTS = (
    "create index packages on derivations (id, status_id) "
    "where ((derivation_type)::text = ('package'::text))",
    "create index queue on derivations (derivation_type desc, status_id, id)",
    "alter table build_reservations add constraint one_per_system "
    "unique (nixos_derivation_id, worker_id)",
    "create index heartbeats on build_reservations (heartbeat_at) include (worker_id)",
    "create statistics planner_stats on status_id, derivation_type from derivations",
)


def test_equivalent_definitions_cover_whatever_their_names(
    database: Database, schema: str, operation: Operation
) -> None:
    """A predicate written another way, a wider key, a unique constraint, a statistic with
    more kinds: each serves the view, so nothing is created next to it; a covering
    statistic with a lower target gets ours."""
    with database.connect(options=f"-c search_path={schema}") as conn:
        for statement in EQUIVALENTS:
            conn.execute(statement)
        before = indexes(conn, schema)

        ok, output = operation()
        assert ok, output
        assert indexes(conn, schema) == before
        assert statistics_targets(conn, schema) == {"planner_stats": STATISTICS_TARGET}
        lines = report(output)
        assert lines[PACKAGE_STATUS_LABEL].startswith("covered by packages "), output
        assert lines["derivations (derivation_type, status_id)"] == (
            "covered by queue (btree (derivation_type DESC, status_id, id))"
        ), output
        assert lines["build_reservations (nixos_derivation_id)"] == (
            "covered by one_per_system (unique constraint, btree (nixos_derivation_id, worker_id))"
        ), output
        statistic = next(v for label, v in lines.items() if label.startswith("statistics"))
        assert statistic.startswith(f"covered by {schema}.planner_stats ("), output
        assert statistic.endswith(f"statistics target raised to {STATISTICS_TARGET}"), output
        assert "5 indexes recommended: 5 covered by existing ones, 0 created." in output, output


def test_a_missing_index_whose_name_is_taken_stops_before_creating_anything(
    database: Database, schema: str, operation: Operation
) -> None:
    with database.connect() as conn:
        conn.execute(
            sql.SQL("create index idx_derivations_type_status on {} (id)").format(
                sql.Identifier(schema, "derivations")
            )
        )
        before = indexes(conn, schema)
        ok, output = operation()
        assert not ok, output
        assert (
            "derivations (derivation_type, status_id) is missing, but its name "
            "idx_derivations_type_status is taken by index idx_derivations_type_status on "
            "derivations (btree (id)), which does not cover it. Fix: rename it (alter index "
            f'"{schema}"."idx_derivations_type_status" rename to ...)'
        ) in output, output
        assert indexes(conn, schema) == before
        assert statistics_targets(conn, schema) == {}


def test_concurrently_without_autocommit_says_how_to_fix(
    database: Database, schema: str, operation: Operation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Autocommit is off by default (builds need their transaction): the fix, not PG's error."""
    monkeypatch.delenv(AUTOCOMMIT_ENV, raising=False)
    ok, output = operation("{concurrently: true}")
    assert not ok, output
    assert "concurrently needs a connection in autocommit mode" in output, output
    assert "run this one command with BUILDQUEUE_AUTOCOMMIT=true" in output, output
    assert "cannot run inside a transaction block" not in output, output
    with database.connect() as conn:
        assert all(
            index.table != "derivations" or index.keys == ("id",)
            for index in indexes(conn, schema).values()
        )
        assert statistics_targets(conn, schema) == {}


def test_a_missing_schema_is_one_message_with_the_fix(
    database: Database, schema: str, operation: Operation
) -> None:
    """README step 3 without --vars: the tables live elsewhere; one message naming them."""
    elsewhere = f"{schema}_elsewhere"
    with database.connect() as conn:
        conn.execute(
            sql.SQL("alter schema {} rename to {}").format(
                sql.Identifier(schema), sql.Identifier(elsewhere)
            )
        )
        try:
            ok, output = operation("{dry_run: true}")
        finally:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(elsewhere)))
    assert not ok, output
    assert f'create_source_indexes: schema "{schema}" does not exist in database "' in output
    holders = output.partition("Schemas in this database that hold them: ")[2].partition(".")[0]
    assert elsewhere in holders.split(", "), output
    assert "Fix: pass the same --vars '{source_schema: ...}' as the build" in output, output
    assert "--vars '{source_schema: " in output, output
    assert "Database Error" not in output, output


def test_a_missing_table_is_one_message_with_the_fix(
    database: Database, schema: str, operation: Operation
) -> None:
    with database.connect() as conn:
        conn.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, "build_reservations")))
    ok, output = operation("{dry_run: true}")
    assert not ok, output
    assert f'create_source_indexes: schema "{schema}" has no table build_reservations' in output
    assert "Fix: pass the same --vars '{source_schema: ...}' as the build" in output, output
    assert "Database Error" not in output, output
