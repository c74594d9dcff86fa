"""Hostile data: the view never errors, never drops a queued system, and says what it did.

All cases live side by side in their own scratch source schema (the real table shapes,
relaxed where a case needs a row the real constraints would reject), and the view is built
for it into a scratch schema of its own with --vars '{source_schema: ...}', so the shared
example is untouched.
Each case is one queued system (or two) with its expected view row; the warn-level
singular tests in tests/ must name exactly the bad rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from support.scratch import EXAMPLE_SCHEMA, ScratchSchemas, scratch_name

SOURCE_SCHEMA = scratch_name("hostile")
VIEW_SCHEMA = scratch_name("hostile_view")
AUDIT_SCHEMA = scratch_name("hostile_audit")  # where --store-failures keeps the failing rows
AUDIT_SCHEMA_ENV = "BUILDQUEUE_AUDIT_SCHEMA"
QUEUED, PUSHED = 12, 14  # status ids in the default numbering (vars)
DONE, BUILDING, CACHED, WAITING = 6, 8, 14, 3
BULK = 10_000
BULK_WORKERS = 100
LONG_SYSTEM = "sérvér-東京-🚀-" + "x" * 5000
LONG_WORKER = "wörker-🛠️-" + "y" * 2000
SHORT_UNICODE_WORKER = "Ölçer-β"

RELAX = """
    alter table derivations alter column derivation_name drop not null;
    alter table derivation_dependencies drop constraint derivation_dependencies_pkey;
    alter table build_reservations
        alter column worker_id drop not null,
        alter column reserved_at drop not null,
        alter column heartbeat_at drop not null;
"""

# (id, commit_id, type, name, status_id); commits 1..12 exist, 99005 does not.
DERIVATIONS = [
    (1, 1, "nixos", "orphan-dependency", QUEUED),
    (2, 2, "nixos", "orphan-reservations", QUEUED),
    (3, 99005, "nixos", "missing-commit", QUEUED),
    (4, 4, "nixos", "null-times", QUEUED),
    (5, 5, "nixos", None, QUEUED),
    (6, 6, "nixos", "null-worker", QUEUED),
    (7, 7, "nixos", "future-heartbeat", QUEUED),
    (8, 8, "nixos", "duplicate-dependencies", QUEUED),
    (9, 9, "nixos", "shared-worker-1", QUEUED),
    (10, 10, "nixos", "shared-worker-2", QUEUED),
    (11, 11, "nixos", "ten-thousand-reservations", QUEUED),
    (12, 12, "nixos", LONG_SYSTEM, QUEUED),
    (13, 1, "nixos", "already-pushed", PUSHED),
    (1001, None, "package", "p-1001", DONE),
    (1002, None, "package", "p-1002", BUILDING),
    (1003, None, "package", "p-1003", CACHED),
    (1004, None, "package", "p-1004", BUILDING),
    (1005, None, "package", "p-1005", BUILDING),
    (1006, None, "package", "p-1006", BUILDING),
    (1007, None, "package", "p-1007", BUILDING),
    (1008, None, "package", "p-1008", BUILDING),
    (1009, None, "package", "p-1009", DONE),
    (1010, None, "package", "p-1010", BUILDING),
    (1011, None, "package", "p-1011", BUILDING),
    (1012, None, "package", "p-1012", WAITING),
    (1013, None, "package", "p-1013", BUILDING),
    (1014, None, "package", "p-1014", BUILDING),
]
DEPENDENCIES = [
    (1, 1001),
    (1, 99001),  # package missing
    (99002, 1001),  # system missing
    (2, 1002),
    (3, 1003),
    (4, 1004),
    (4, 1005),
    (6, 1006),
    (6, 1007),
    (7, 1008),
    (8, 1009),
    (8, 1009),
    (8, 1009),
    (8, 1010),
    (8, 1010),
    (9, 1011),
    (10, 1012),
    (12, 1013),
    (12, 1014),
    (13, 1001),
]
# (id, worker_id, derivation_id, nixos_derivation_id, reserved_at, heartbeat_at) as SQL
RESERVATIONS = [
    (1, "'w-a'", 99003, 2, "now() - interval '1 hour'", "now()"),  # derivation missing
    (2, "'w-b'", 1002, 99004, "now() - interval '1 hour'", "now()"),  # system missing
    (3, "'w-n1'", 1004, 4, "null", "null"),
    (4, "'w-n2'", 1005, 4, "timestamptz '2024-03-01 10:00+00'", "null"),
    (5, "null", 1006, 6, "now() - interval '1 hour'", "now()"),
    (6, "'w-6'", 1007, 6, "now() - interval '1 hour'", "now()"),
    (7, "'w-7'", 1008, 7, "now() - interval '1 hour'", "now() + interval '1 hour'"),
    (8, "'w-shared'", 1011, 9, "now() - interval '1 hour'", "now()"),
    (9, "'w-shared'", 1012, 10, "now() - interval '1 hour'", "now()"),
    (10, "%(long_worker)s", 1013, 12, "now() - interval '1 hour'", "now()"),
    (11, "%(short_worker)s", 1014, 12, "now() - interval '1 hour'", "now()"),
]
BULK_SQL = [
    """insert into derivations (id, derivation_type, derivation_name, status_id)
       select 100000 + i, 'package', 'bulk-' || i, 8 from generate_series(1, %(bulk)s) as i""",
    """insert into derivation_dependencies (derivation_id, depends_on_id)
       select 11, 100000 + i from generate_series(1, %(bulk)s) as i""",
    """insert into build_reservations
           (id, worker_id, derivation_id, nixos_derivation_id, reserved_at, heartbeat_at)
       select 1000 + i, 'bulk-' || lpad((i %% %(workers)s)::text, 3, '0'), 100000 + i, 11,
              now() - interval '1 hour', now() - interval '10 seconds'
       from generate_series(1, %(bulk)s) as i""",
]


@dataclass
class Case:
    """One hostile case: the systems it plants and the view columns expected for each."""

    name: str
    expected: dict[int, dict[str, Any]]


def _sorted_bytes(*names: str) -> list[str]:
    return sorted(names, key=lambda name: name.encode())


CASES = [
    Case(
        "dependency on a missing package is not counted",
        {1: {"total_packages": 1, "completed_packages": 1, "status": "ready_for_system_build"}},
    ),
    Case(
        "reservation of a missing derivation still names its system's worker",
        {
            2: {
                "total_packages": 1,
                "active_workers": 1,
                "worker_ids": ["w-a"],
                "status": "building",
            }
        },
    ),
    Case(
        "system whose commit row is missing is listed with NULL commit fields",
        {3: {"commit_timestamp": None, "git_commit_hash": None, "total_packages": 1}},
    ),
    Case(
        "NULL reserved_at and heartbeat_at are left out, and never stale",
        {
            4: {
                "active_workers": 2,
                "worker_ids": ["w-n1", "w-n2"],
                "latest_heartbeat": None,
                "has_stale_workers": False,
                "earliest_reservation": "2024-03-01 10:00:00+00",
            }
        },
    ),
    Case(
        "system with a NULL name is still listed",
        {5: {"system_name": None, "total_packages": 0, "active_workers": 0}},
    ),
    Case(
        "reservation with a NULL worker_id is not a worker",
        {6: {"active_workers": 1, "worker_ids": ["w-6"], "building_packages": 2}},
    ),
    Case(
        "heartbeat in the future is not stale",
        {7: {"active_workers": 1, "has_stale_workers": False, "heartbeat_in_future": True}},
    ),
    Case(
        "duplicate dependency rows count once",
        {8: {"total_packages": 2, "completed_packages": 1, "building_packages": 1}},
    ),
    Case(
        "a worker on two systems is a worker of each",
        {
            9: {"active_workers": 1, "worker_ids": ["w-shared"], "status": "building"},
            10: {"active_workers": 1, "worker_ids": ["w-shared"], "pending_packages": 1},
        },
    ),
    Case(
        "10,000 reservations on one system",
        {
            11: {
                "total_packages": BULK,
                "building_packages": BULK,
                "active_workers": BULK_WORKERS,
                "worker_ids": [f"bulk-{i:03d}" for i in range(BULK_WORKERS)],
                "has_stale_workers": False,
            }
        },
    ),
    Case(
        "unicode and very long system names and worker ids come back intact",
        {
            12: {
                "system_name": LONG_SYSTEM,
                "active_workers": 2,
                "worker_ids": _sorted_bytes(LONG_WORKER, SHORT_UNICODE_WORKER),
            }
        },
    ),
]
QUEUED_IDS = {row[0] for row in DERIVATIONS if row[2] == "nixos" and row[4] == QUEUED}

# warn test -> the identifying values of the rows it must return
EXPECTED_WARNINGS = {
    "assert_dependencies_reference_existing_derivations": (
        "select derivation_id, depends_on_derivation_id",
        {(1, 99001), (99002, 1001)},
    ),
    "assert_reservations_reference_existing_derivations": (
        "select derivation_id",
        {(99003,), (1002,)},
    ),
    "assert_queued_systems_have_commits": ("select nixos_id", {(3,)}),
    "assert_queued_systems_have_names": ("select nixos_id", {(5,)}),
    "assert_reservations_are_complete": (
        "select derivation_id, problem",
        {
            (1004, "reserved_at is null, heartbeat_at is null"),
            (1005, "heartbeat_at is null"),
            (1006, "worker_id is null"),
        },
    ),
    "assert_reservation_times_not_in_future": ("select derivation_id", {(1008,)}),
    "dependency_edges_are_unique": (
        "select derivation_id, depends_on_derivation_id, occurrences",
        {(8, 1009, 3), (8, 1010, 2)},
    ),
    "assert_dependency_rows_have_a_unique_key": (
        "select problem",
        {("no unique key on (derivation_id, depends_on_id)",)},
    ),
}


def _plant(database: Database, project: DbtProject) -> None:
    with database.connect() as conn:
        conn.execute(f"drop schema if exists {SOURCE_SCHEMA} cascade")
    project.invoke(
        "run-operation", "create_crystal_forge_tables", "--args", f"{{schema: {SOURCE_SCHEMA}}}"
    )
    params = {
        "long_worker": LONG_WORKER,
        "short_worker": SHORT_UNICODE_WORKER,
        "bulk": BULK,
        "workers": BULK_WORKERS,
    }
    with database.connect(options=f"-c search_path={SOURCE_SCHEMA}") as conn, conn.transaction():
        conn.execute(RELAX)
        # the status catalogue the build resolves the status names from (the example's)
        conn.execute(
            f"insert into derivation_statuses select * from {EXAMPLE_SCHEMA}.derivation_statuses"
        )
        conn.cursor().executemany(
            "insert into commits (id, flake_id, git_commit_hash, commit_timestamp)"
            " values (%s, 1, md5(%s::text),"
            " timestamptz '2024-03-01 00:00+00' + %s * interval '1 hour')",
            [(i, i, i) for i in range(1, 13)],
        )
        conn.cursor().executemany(
            "insert into derivations (id, commit_id, derivation_type, derivation_name, status_id)"
            " values (%s, %s, %s, %s, %s)",
            DERIVATIONS,
        )
        conn.cursor().executemany(
            "insert into derivation_dependencies (derivation_id, depends_on_id) values (%s, %s)",
            DEPENDENCIES,
        )
        for row in RESERVATIONS:
            conn.execute(
                "insert into build_reservations (id, worker_id, derivation_id,"
                " nixos_derivation_id, reserved_at, heartbeat_at)"
                f" values ({row[0]}, {row[1]}, {row[2]}, {row[3]}, {row[4]}, {row[5]})",
                params,
            )
        for statement in BULK_SQL:
            conn.execute(statement, params)


@pytest.fixture(scope="module")
def hostile(
    database: Database, build: DbtOutcome, module_scratch_schema: ScratchSchemas
) -> tuple[DbtOutcome, DbtOutcome]:
    """(dbt run, dbt test --store-failures) of the view over the hostile source schema.

    The failing rows go where README says BUILDQUEUE_AUDIT_SCHEMA sends them: set for the
    test command, as a user sets it (dbt_project.yml reads it, not the profile)."""
    project = DbtProject(
        database,
        target="ci",
        schema=module_scratch_schema("hostile_view"),
        vars={"source_schema": module_scratch_schema("hostile")},
    )
    _plant(database, project)
    run = project.invoke("run", check=False)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(AUDIT_SCHEMA_ENV, module_scratch_schema("hostile_audit"))
        tested = project.invoke(
            "test", "--select", "test_type:data", "--store-failures", check=False
        )
    return run, tested


@pytest.fixture(scope="module")
def view_rows(database: Database, hostile: tuple[DbtOutcome, DbtOutcome]) -> list[dict]:
    assert hostile[0].success, hostile[0].describe()
    with database.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"select *, latest_heartbeat > now() as heartbeat_in_future,"
            f" to_char(earliest_reservation at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS+00')"
            f" as earliest_reservation_text from {VIEW_SCHEMA}.view_build_queue_status"
        )
        return cur.fetchall()


def test_no_queued_system_is_dropped(view_rows: list[dict]) -> None:
    assert sorted(row["nixos_id"] for row in view_rows) == sorted(QUEUED_IDS)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_row(view_rows: list[dict], case: Case) -> None:
    by_id = {row["nixos_id"]: row for row in view_rows}
    for nixos_id, expected in case.expected.items():
        row = dict(by_id[nixos_id])
        row["earliest_reservation"] = row.pop("earliest_reservation_text")
        assert {key: row[key] for key in expected} == expected, nixos_id


def test_system_without_commit_sorts_last(view_rows: list[dict]) -> None:
    assert view_rows[-1]["nixos_id"] == 3
    assert all(row["commit_timestamp"] is not None for row in view_rows[:-1])


def test_pending_counts_stay_consistent(view_rows: list[dict]) -> None:
    for row in view_rows:
        parts = row["completed_packages"] + row["building_packages"] + row["pending_packages"]
        assert parts == row["total_packages"], row["nixos_id"]
        assert row["active_workers"] == len(row["worker_ids"]), row["nixos_id"]


def _test_statuses(outcome: DbtOutcome) -> dict[str, str]:
    """Data test name -> status (generic tests' ids carry a hash after the name)."""
    return {
        node.split(".")[2]: status
        for node, status in outcome.node_statuses.items()
        if node.startswith("test.")
    }


@pytest.mark.parametrize("test_name", sorted(EXPECTED_WARNINGS))
def test_warn_test_names_the_bad_rows(
    database: Database, hostile: tuple[DbtOutcome, DbtOutcome], test_name: str
) -> None:
    tested = hostile[1]
    assert _test_statuses(tested).get(test_name) == "warn", tested.describe()
    select, expected = EXPECTED_WARNINGS[test_name]
    with database.connect() as conn:
        rows = conn.execute(f"{select} from {AUDIT_SCHEMA}.{test_name}").fetchall()
    assert set(rows) == expected


def test_warn_tests_pass_on_the_example(build: DbtOutcome) -> None:
    statuses = _test_statuses(build)
    for test_name in EXPECTED_WARNINGS:
        assert statuses.get(test_name) == "pass", test_name


def test_warnings_are_not_failures(hostile: tuple[DbtOutcome, DbtOutcome]) -> None:
    assert hostile[1].success, hostile[1].describe()


def test_each_bad_row_is_named_by_one_test(hostile: tuple[DbtOutcome, DbtOutcome]) -> None:
    """No condition is checked twice under two names: the tests that warn are exactly the
    ones above, each naming its own kind of bad row."""
    warned = {name for name, status in _test_statuses(hostile[1]).items() if status == "warn"}
    assert warned == set(EXPECTED_WARNINGS), hostile[1].describe()


def test_shared_example_untouched(conn: psycopg.Connection) -> None:
    assert conn.execute("select count(*) from view_build_queue_status").fetchone() == (3,)
