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

Every test works in its own schema (`source_indexes_<uuid>`), dropped at teardown.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from buildqueue.cli import run_in_subprocess
from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.fleet import drop_secondary_indexes

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


@dataclass(frozen=True)
class Index:
    """An index as the planner sees it: table, key columns, INCLUDE columns, predicate."""

    table: str
    keys: tuple[str, ...]
    include: tuple[str, ...]
    predicate: str | None
    valid: bool


def indexes(conn: psycopg.Connection, schema: str) -> dict[str, Index]:
    """Every index in ``schema`` by name."""
    rows = conn.execute(
        """
        select
            index_class.relname,
            table_class.relname,
            array(
                select pg_get_indexdef(pg_index.indexrelid, position, true)
                from generate_series(1, pg_index.indnatts) as position
                order by position
            ),
            pg_index.indnkeyatts,
            pg_get_expr(pg_index.indpred, pg_index.indrelid),
            pg_index.indisvalid
        from pg_index
        join pg_class as index_class on index_class.oid = pg_index.indexrelid
        join pg_class as table_class on table_class.oid = pg_index.indrelid
        where index_class.relnamespace = %s::regnamespace
        """,
        [schema],
    ).fetchall()
    return {
        name: Index(table, tuple(columns[:keys]), tuple(columns[keys:]), predicate, valid)
        for name, table, columns, keys, predicate, valid in rows
    }


def statistics_targets(conn: psycopg.Connection, schema: str) -> dict[str, int | None]:
    rows = conn.execute(
        "select stxname, stxstattarget from pg_statistic_ext where stxnamespace = %s::regnamespace",
        [schema],
    ).fetchall()
    return dict(rows)


def operation(
    database: Database, schema: str, args: str = "{}", env: dict[str, str] | None = None
) -> tuple[int, str]:
    """The operation as an operator runs it (its own process): exit code, output."""
    completed = run_in_subprocess(
        "dbt",
        "--database",
        database.conninfo(),
        "--target",
        "ci",
        "run-operation",
        "create_source_indexes",
        "--vars",
        f"{{source_schema: {schema}}}",
        "--args",
        args,
        env=env,
    )
    return completed.returncode, completed.stdout + completed.stderr


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
def schema(database: Database) -> Iterator[str]:
    """A uniquely named scratch schema holding Crystal Forge's tables and keys, no more."""
    name = f"source_indexes_{uuid.uuid4().hex[:12]}"
    project = DbtProject(database, target="ci")
    with database.connect() as conn:
        try:
            project.invoke(
                "run-operation", "create_crystal_forge_tables", "--args", f"{{schema: {name}}}"
            )
            drop_secondary_indexes(conn, name)
            conn.execute(sql.SQL("drop statistics {}").format(sql.Identifier(name, STATISTIC)))
            yield name
        finally:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


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
    database: Database, schema: str, crystal_forge: psycopg.Connection
) -> None:
    before = indexes(crystal_forge, schema)
    code, output = operation(database, schema, "{concurrently: true, dry_run: true}")
    assert code == 0, output
    lines = report(output)
    assert lines["build_reservations (heartbeat_at)"] == (
        "covered by idx_build_reservations_heartbeat (btree (heartbeat_at))"
    ), output
    assert lines["build_reservations (nixos_derivation_id)"] == (
        "covered by idx_build_reservations_nixos (btree (nixos_derivation_id))"
    ), output
    assert lines["derivation_dependencies (derivation_id)"] == (
        "covered by derivation_dependencies_pkey (primary key, btree (derivation_id, depends_on_id))"
    ), output
    assert lines["derivations (derivation_type, status_id)"] == (
        'missing: create index concurrently if not exists "idx_derivations_type_status" '
        f'on "{schema}"."derivations" (derivation_type, status_id);'
    ), output
    assert lines[PACKAGE_STATUS_LABEL].startswith(
        'missing: create index concurrently if not exists "idx_derivations_package_status"'
    ), output
    statistic = next(verdict for label, verdict in lines.items() if label.startswith("statistics"))
    assert statistic.startswith(f'missing: create statistics if not exists "{schema}"."{STATISTIC}"')
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
) -> None:
    before = indexes(crystal_forge, schema)
    env = dict(os.environ)
    if concurrently:  # as the docs say to run it: autocommit on for this command only
        env[AUTOCOMMIT_ENV] = "true"
    args = f"{{concurrently: {str(concurrently).lower()}}}"

    code, output = operation(database, schema, args, env=env)
    assert code == 0, output
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
    assert lines["derivations (derivation_type, status_id)"] == "created: idx_derivations_type_status"
    assert "analyzed: derivations" in output, output

    code, output = operation(database, schema, args, env=env)
    assert code == 0, output
    assert indexes(crystal_forge, schema) == after
    assert statistics_targets(crystal_forge, schema) == {STATISTIC: STATISTICS_TARGET}
    verdicts = report(output)
    assert len(verdicts) == 6 and all(v.startswith("covered by ") for v in verdicts.values()), output
    assert verdicts[PACKAGE_STATUS_LABEL] == (
        "covered by idx_derivations_package_status "
        "(btree (id) INCLUDE (status_id) WHERE (derivation_type = 'package'::text))"
    ), output
    assert "5 indexes recommended: 5 covered by existing ones, 0 created." in output, output
    assert "analyzed" not in output, output


def test_look_alikes_do_not_cover(database: Database, schema: str) -> None:
    """Another leading column, another predicate, an expression, another operator class,
    an invalid index: none serves the view's queries, so none counts."""
    with database.connect() as conn:

        def run(statement: str) -> None:
            conn.execute(statement.replace("{s}", sql.Identifier(schema).as_string(conn)))

        run("alter table {s}.derivation_dependencies drop constraint derivation_dependencies_pkey")
        run("create index dependencies_reversed on {s}.derivation_dependencies (depends_on_id, derivation_id)")
        run("create index systems_only on {s}.derivations (derivation_type, status_id) where derivation_type = 'nixos'")
        run("create index type_status_lower on {s}.derivations (lower(derivation_type), status_id)")
        run("create index type_status_pattern on {s}.derivations (derivation_type text_pattern_ops, status_id)")
        run("create index heartbeat_hash on {s}.build_reservations using hash (heartbeat_at)")
        run("create index systems_packages on {s}.derivations (id) include (status_id) where derivation_type = 'nixos'")
        run("create index id_only on {s}.derivations (id, derivation_type)")
        # a failed create index concurrently leaves an invalid index behind
        run("insert into {s}.build_reservations (worker_id, derivation_id, nixos_derivation_id) values ('w', 1, 7), ('w', 2, 7)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            run("create unique index concurrently nixos_broken on {s}.build_reservations (nixos_derivation_id)")
        assert indexes(conn, schema)["nixos_broken"].valid is False

        code, output = operation(database, schema, "{dry_run: true}")
        assert code == 0, output
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


def test_equivalent_definitions_cover_whatever_their_names(
    database: Database, schema: str
) -> None:
    """A predicate written another way, a wider key, a unique constraint, a statistic with
    more kinds: each serves the view, so nothing is created next to it; a covering
    statistic with a lower target gets ours."""
    with database.connect() as conn:

        def run(statement: str) -> None:
            conn.execute(statement.replace("{s}", sql.Identifier(schema).as_string(conn)))

        run("create index packages on {s}.derivations (id, status_id) where ((derivation_type)::text = ('package'::text))")
        run("create index queue on {s}.derivations (derivation_type desc, status_id, id)")
        run("alter table {s}.build_reservations add constraint one_per_system unique (nixos_derivation_id, worker_id)")
        run("create index heartbeats on {s}.build_reservations (heartbeat_at) include (worker_id)")
        run("create statistics {s}.planner_stats on status_id, derivation_type from {s}.derivations")
        before = indexes(conn, schema)

        code, output = operation(database, schema)
        assert code == 0, output
        assert indexes(conn, schema) == before
        assert statistics_targets(conn, schema) == {"planner_stats": STATISTICS_TARGET}
        lines = report(output)
        assert lines[PACKAGE_STATUS_LABEL].startswith("covered by packages "), output
        assert lines["derivations (derivation_type, status_id)"].startswith("covered by queue "), output
        assert lines["build_reservations (nixos_derivation_id)"] == (
            "covered by one_per_system (unique constraint, btree (nixos_derivation_id, worker_id))"
        ), output
        statistic = next(v for label, v in lines.items() if label.startswith("statistics"))
        assert statistic.startswith(f"covered by {schema}.planner_stats ("), output
        assert statistic.endswith(f"statistics target raised to {STATISTICS_TARGET}"), output
        assert "5 indexes recommended: 5 covered by existing ones, 0 created." in output, output


def test_a_missing_index_whose_name_is_taken_stops_before_creating_anything(
    database: Database, schema: str
) -> None:
    with database.connect() as conn:
        conn.execute(
            sql.SQL("create index idx_derivations_type_status on {} (id)").format(
                sql.Identifier(schema, "derivations")
            )
        )
        before = indexes(conn, schema)
        code, output = operation(database, schema)
        assert code == 1, output
        assert (
            "derivations (derivation_type, status_id) is missing, but its name "
            "idx_derivations_type_status is taken by index idx_derivations_type_status on "
            "derivations (btree (id)), which does not cover it. Fix: rename it (alter index "
            f'"{schema}"."idx_derivations_type_status" rename to ...)'
        ) in output, output
        assert indexes(conn, schema) == before
        assert statistics_targets(conn, schema) == {}


def test_concurrently_without_autocommit_says_how_to_fix(
    database: Database, schema: str
) -> None:
    """Autocommit is off by default (builds need their transaction): the fix, not PG's error."""
    code, output = operation(
        database,
        schema,
        "{concurrently: true}",
        env={k: v for k, v in os.environ.items() if k != AUTOCOMMIT_ENV},
    )
    assert code == 1, output
    assert "concurrently needs a connection in autocommit mode" in output, output
    assert "run this one command with BUILDQUEUE_AUTOCOMMIT=true" in output, output
    assert "cannot run inside a transaction block" not in output, output
    with database.connect() as conn:
        assert all(index.table != "derivations" or index.keys == ("id",) for index in indexes(conn, schema).values())
        assert statistics_targets(conn, schema) == {}


def test_a_missing_schema_is_one_message_with_the_fix(database: Database, schema: str) -> None:
    missing = f"{schema}_absent"
    code, output = operation(database, missing, "{dry_run: true}")
    assert code == 1, output
    assert f'create_source_indexes: schema "{missing}" does not exist in database "' in output
    holders = output.partition("Schemas in this database that hold them: ")[2].partition(".")[0]
    assert schema in holders.split(", "), output
    assert "Fix: pass the same --vars '{source_schema: ...}' as the build" in output, output
    assert f"--vars '{{source_schema: " in output, output
    assert "does not exist\n" not in output and "Database Error" not in output, output


def test_a_missing_table_is_one_message_with_the_fix(database: Database, schema: str) -> None:
    with database.connect() as conn:
        conn.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, "build_reservations")))
    code, output = operation(database, schema, "{dry_run: true}")
    assert code == 1, output
    assert f'create_source_indexes: schema "{schema}" has no table build_reservations' in output
    assert "Fix: pass the same --vars '{source_schema: ...}' as the build" in output, output
    assert "Database Error" not in output, output
