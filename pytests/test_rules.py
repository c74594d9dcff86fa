"""The view's rules over data: the spec's example, liveness, hostile data, statuses by name."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.report import VIEW_COLUMNS
from support.crystal_forge import create_scratch_database, drop_database, load_example
from support.example import ExampleDatabase
from support.relations import EXPECTED, check_relations_equal, run_dbt
from support.scratch import EXAMPLE_SCHEMA, VIEW_SCHEMA, ScratchSchemas, scratch_name

VIEW = "view_build_queue_status"
FRESHNESS = "source.buildqueue.crystal_forge.build_reservations"


def test_the_build_passes_and_gives_the_example(
        example: ExampleDatabase, example_conn: psycopg.Connection) -> None:  # fmt: skip
    """On the default database and on PostgreSQL 15 in a container."""
    assert example.outcome.success, example.outcome.describe()
    described = example_conn.execute(f"select * from {VIEW} limit 0").description
    assert tuple(column.name for column in described) == VIEW_COLUMNS
    check_relations_equal(example_conn, VIEW, f"{example.source_schema}.{EXPECTED}")


def test_the_build_adds_only_the_view_and_its_history(conn: psycopg.Connection) -> None:
    built = "select relname, relkind from pg_class where relnamespace = %s::regnamespace order by 1"
    assert conn.execute(built, [VIEW_SCHEMA]).fetchall() == [
        ("build_queue_samples", "r"), ("build_queue_samples_pkey", "i"), (VIEW, "v")]  # fmt: skip
    ours = "select relname from pg_class where relnamespace = %(s)s::regnamespace and relname in"
    ours += " (%(v)s, 'build_queue_samples') union all select tgname from pg_trigger, pg_class c"
    ours += " where c.oid = tgrelid and relnamespace = %(s)s::regnamespace and not tgisinternal"
    assert conn.execute(ours, {"s": EXAMPLE_SCHEMA, "v": VIEW}).fetchall() == []  # nor triggers


FINISH_A = ["update derivations set status_id = 6 where id in (108, 109, 110)",
            "delete from build_reservations where nixos_derivation_id = 1"]  # fmt: skip
LIVE = {  # liveness, no dbt run: a worker's writes, a system -> its columns (None: not listed)
    "a new reservation": (
        ["insert into build_reservations (worker_id, derivation_id) values ('w9', 2)"], "server-b",
        {"active_workers": 1, "worker_ids": ["w9"], "has_stale_workers": False, "recent": True}),
    "a heartbeat clears staleness": (
        ["update build_reservations set heartbeat_at = now() where nixos_derivation_id = 3"],
        "server-c", {"has_stale_workers": False}),
    "a quiet heartbeat turns stale": (
        ["update build_reservations set heartbeat_at = now() - interval '6 minutes'"
         " where worker_id = 'worker-1'"], "server-a", {"has_stale_workers": True}),
    "finished packages make the system ready": (FINISH_A, "server-a",
        {"completed_packages": 10, "total_packages": 10, "building_packages": 0,
         "pending_packages": 0, "active_workers": 0, "worker_ids": [],
         "status": "ready_for_system_build", "cache_status": "waiting_for_cache_push"}),
    "a cache push clears the cache wait": (
        [*FINISH_A, "update derivations set status_id = 14 where id between 101 and 110"],
        "server-a", {"status": "ready_for_system_build", "cache_status": None}),
    "a system leaving the queue disappears": (
        ["update derivations set status_id = 14 where id = 2"], "server-b", None)}  # fmt: skip


@pytest.mark.parametrize(("writes", "system", "expected"), LIVE.values(), ids=LIVE.keys())
def test_a_write_is_in_the_next_query(example: ExampleDatabase, writable_example: ExampleDatabase,
        writes: list[str], system: str, expected: dict | None) -> None:  # fmt: skip
    with writable_example.connect_view() as grafana:
        check_relations_equal(grafana, VIEW, f"{example.source_schema}.{EXPECTED}")
        for write in writes:
            with writable_example.connect_source() as worker:
                worker.execute(write)
        query = f"select *, latest_heartbeat > now() - interval '1 minute' as recent from {VIEW}"
        rows = grafana.cursor(row_factory=dict_row).execute(query + " where system_name = %s",
                                                            [system]).fetchall()  # fmt: skip
    assert [{key: row[key] for key in expected} for row in rows] == ([expected] if expected else [])


def test_source_freshness_warns_once_heartbeats_go_quiet(
        example_copy: Callable[..., DbtProject], database: Database) -> None:  # fmt: skip
    copy = example_copy("freshness", view=False)
    assert run_dbt(copy, "source", "freshness").node_statuses[FRESHNESS] == "pass"
    with database.connect() as conn:
        conn.execute(f"update {copy.schema}.build_reservations set heartbeat_at = '-infinity'")
    assert run_dbt(copy, "source", "freshness").node_statuses[FRESHNESS] == "warn"


QUEUED, PUSHED, DONE, BUILDING, CACHED, WAITING = 12, 14, 6, 8, 14, 3  # the spec's numbering
BULK, BULK_WORKERS, LONG_SYSTEM = 10_000, 100, "sérvér-東京-🚀-" + "x" * 5000
LONG_WORKER, SHORT_WORKER = "wörker-🛠️-" + "y" * 2000, "Ölçer-β"
SYSTEMS = ["orphan-dependency", "orphan-reservations", "missing-commit", "null-times", None,
           "null-worker", "future-heartbeat", "duplicate-dependencies", "shared-worker-1",
           "shared-worker-2", "ten-thousand-reservations", LONG_SYSTEM]  # fmt: skip
PACKAGE_STATUS = {1001: DONE, 1003: CACHED, 1009: DONE, 1012: WAITING}  # others BUILDING
DERIVATIONS = [
    *[(i, 99005 if i == 3 else i, "nixos", name, QUEUED) for i, name in enumerate(SYSTEMS, 1)],
    (13, 1, "nixos", "already-pushed", PUSHED),
    *[(p, None, "package", f"p-{p}", PACKAGE_STATUS.get(p, BUILDING)) for p in range(1001, 1015)],
]
DEPENDENCIES = [(1, 1001), (1, 99001), (99002, 1001), (2, 1002), (3, 1003), (4, 1004), (4, 1005),
                (6, 1006), (6, 1007), (7, 1008), (8, 1009), (8, 1009), (8, 1009), (8, 1010),
                (8, 1010), (9, 1011), (10, 1012), (12, 1013), (12, 1014), (13, 1001)]  # fmt: skip
HOUR_AGO = "now() - interval '1 hour'"
RESERVATIONS = [  # id, worker_id, derivation_id, nixos_derivation_id, reserved_at, heartbeat_at
    (1, "'w-a'", 99003, 2, HOUR_AGO, "now()"), (2, "'w-b'", 1002, 99004, HOUR_AGO, "now()"),
    (3, "'w-n1'", 1004, 4, "null", "null"),
    (4, "'w-n2'", 1005, 4, "timestamptz '2024-03-01 10:00+00'", "null"),
    (5, "null", 1006, 6, HOUR_AGO, "now()"), (6, "'w-6'", 1007, 6, HOUR_AGO, "now()"),
    (7, "'w-7'", 1008, 7, HOUR_AGO, "now() + interval '1 hour'"),
    (8, "'w-shared'", 1011, 9, HOUR_AGO, "now()"), (9, "'w-shared'", 1012, 10, HOUR_AGO, "now()"),
    (10, "%(long)s", 1013, 12, HOUR_AGO, "now()"), (11, "%(short)s", 1014, 12, HOUR_AGO, "now()"),
]  # fmt: skip
RELAX = """alter table derivations alter column derivation_name drop not null;
    alter table derivation_dependencies drop constraint derivation_dependencies_pkey;
    alter table build_reservations alter column worker_id drop not null,
        alter column reserved_at drop not null, alter column heartbeat_at drop not null"""
PLANT = [
    f"insert into derivation_statuses select * from {EXAMPLE_SCHEMA}.derivation_statuses",
    "insert into commits (id, flake_id, git_commit_hash, commit_timestamp) select i, 1,"
    " md5(i::text), timestamptz '2024-03-01 00:00+00' + i * interval '1 hour'"
    " from generate_series(1, 12) as i",
    *[f"insert into build_reservations values ({', '.join(map(str, r))})" for r in RESERVATIONS],
    "insert into derivations (id, derivation_type, derivation_name, status_id)"
    " select 100000 + i, 'package', 'bulk-' || i, 8 from generate_series(1, %(bulk)s) as i",
    "insert into derivation_dependencies (derivation_id, depends_on_id)"
    " select 11, 100000 + i from generate_series(1, %(bulk)s) as i",
    "insert into build_reservations select 1000 + i, 'bulk-' || lpad((i %% %(workers)s)::text,"
    " 3, '0'), 100000 + i, 11, now() - interval '1 hour', now() - interval '10 seconds'"
    " from generate_series(1, %(bulk)s) as i"]  # fmt: skip
CASES = {
    "dependency on a missing package is not counted":
        {1: {"total_packages": 1, "completed_packages": 1, "status": "ready_for_system_build"}},
    "reservation of a missing derivation still names its worker":
        {2: {"total_packages": 1, "active_workers": 1, "worker_ids": ["w-a"],
             "status": "building"}},
    "a missing commit gives NULL commit fields, sorted last":
        {3: {"commit_timestamp": None, "git_commit_hash": None, "total_packages": 1, "last": True}},
    "NULL reservation times are left out, never stale":
        {4: {"active_workers": 2, "worker_ids": ["w-n1", "w-n2"], "latest_heartbeat": None,
             "has_stale_workers": False, "earliest": "2024-03-01 10:00:00+00"}},
    "a system with a NULL name is listed":
        {5: {"system_name": None, "total_packages": 0, "active_workers": 0}},
    "a NULL worker_id is not a worker":
        {6: {"active_workers": 1, "worker_ids": ["w-6"], "building_packages": 2}},
    "a heartbeat in the future is not stale":
        {7: {"active_workers": 1, "has_stale_workers": False, "future": True}},
    "duplicate dependency rows count once":
        {8: {"total_packages": 2, "completed_packages": 1, "building_packages": 1}},
    "a worker on two systems is a worker of each":
        {9: {"active_workers": 1, "worker_ids": ["w-shared"], "status": "building"},
         10: {"active_workers": 1, "worker_ids": ["w-shared"], "pending_packages": 1}},
    "10,000 reservations on one system":
        {11: {"total_packages": BULK, "building_packages": BULK, "active_workers": BULK_WORKERS,
              "worker_ids": [f"bulk-{i:03d}" for i in range(BULK_WORKERS)],
              "has_stale_workers": False}},
    "unicode and very long names come back intact":
        {12: {"system_name": LONG_SYSTEM, "active_workers": 2,
              "worker_ids": sorted([LONG_WORKER, SHORT_WORKER], key=str.encode)}}}  # fmt: skip
WARNINGS = {  # warn-level data test -> its columns naming the bad rows -> those rows
    "assert_dependencies_reference_existing_derivations":
        ("derivation_id, depends_on_derivation_id", {(1, 99001), (99002, 1001)}),
    "assert_reservations_reference_existing_derivations": ("derivation_id", {(99003,), (1002,)}),
    "assert_queued_systems_have_commits": ("nixos_id", {(3,)}),
    "assert_queued_systems_have_names": ("nixos_id", {(5,)}),
    "assert_reservations_are_complete": ("derivation_id, problem", {
        (1004, "reserved_at is null, heartbeat_at is null"), (1005, "heartbeat_at is null"),
        (1006, "worker_id is null")}),
    "assert_reservation_times_not_in_future": ("derivation_id", {(1008,)}),
    "dependency_edges_are_unique":
        ("derivation_id, depends_on_derivation_id, occurrences", {(8, 1009, 3), (8, 1010, 2)}),
    "assert_dependency_rows_have_a_unique_key":
        ("problem", {("no unique key on (derivation_id, depends_on_id)",)})}  # fmt: skip
Hostile = tuple[list[dict], DbtOutcome, str]  # the fixture below


@pytest.fixture(scope="module")
def hostile(
    database: Database, build: DbtOutcome, module_scratch_schema: ScratchSchemas
) -> Hostile:
    """The view over hostile data (never an error or a dropped system), its warnings' audit."""
    source, audit = module_scratch_schema("hostile"), module_scratch_schema("hostile_audit")
    project = DbtProject(database, target="ci", schema=module_scratch_schema("hostile_view"),
                         vars={"source_schema": source})  # fmt: skip
    run_dbt(project, "run-operation", "create_crystal_forge_tables", "--args",
            f"{{schema: {source}}}")  # fmt: skip
    params = {"long": LONG_WORKER, "short": SHORT_WORKER, "bulk": BULK, "workers": BULK_WORKERS}
    with database.connect(options=f"-c search_path={source}") as conn, conn.transaction():
        conn.execute(RELAX)
        cur = conn.cursor()
        cur.executemany("insert into derivations (id, commit_id, derivation_type, derivation_name,"
                        " status_id) values (%s, %s, %s, %s, %s)", DERIVATIONS)  # fmt: skip
        cur.executemany("insert into derivation_dependencies values (%s, %s)", DEPENDENCIES)
        for statement in PLANT:
            conn.execute(statement, params if "%(" in statement else None)
    run_dbt(project, "run")
    with pytest.MonkeyPatch.context() as env:  # where the README sends the failing rows
        env.setenv("BUILDQUEUE_AUDIT_SCHEMA", audit)
        tested = run_dbt(project, "test", "--select", "test_type:data", "--store-failures")
    with database.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select *, latest_heartbeat > now() as future, to_char(earliest_reservation at time"
            f" zone 'UTC', 'YYYY-MM-DD HH24:MI:SS+00') as earliest from {project.schema}.{VIEW}"
        ).fetchall()
    for position, row in enumerate(rows, 1):
        row["last"] = position == len(rows)
    return rows, tested, audit


def test_hostile_data_keeps_every_queued_system(hostile: Hostile) -> None:
    assert sorted(row["nixos_id"] for row in hostile[0]) == list(range(1, 13))
    for row in hostile[0]:
        parts = row["completed_packages"] + row["building_packages"] + row["pending_packages"]
        assert (parts, len(row["worker_ids"])) == (row["total_packages"], row["active_workers"])


@pytest.mark.parametrize("expected", CASES.values(), ids=CASES.keys())
def test_hostile_case(hostile: Hostile, expected: dict) -> None:
    by_id = {row["nixos_id"]: row for row in hostile[0]}
    for nixos_id, columns in expected.items():
        assert {key: by_id[nixos_id][key] for key in columns} == columns, nixos_id


def test_each_bad_row_is_named_by_one_warning(
        database: Database, build: DbtOutcome, hostile: Hostile) -> None:  # fmt: skip
    _, tested, audit = hostile  # test ids: test.buildqueue.<name>[.<hash> if generic]
    warned = {n.split(".")[2] for n, s in tested.node_statuses.items() if s == "warn"}
    assert warned == set(WARNINGS), tested.describe()
    passed = {n.split(".")[2] for n, s in build.node_statuses.items() if s == "pass"}
    assert set(WARNINGS) <= passed  # on the example
    with database.connect() as conn:
        for name, (columns, expected) in WARNINGS.items():
            assert set(conn.execute(f"select {columns} from {audit}.{name}")) == expected, name


MAPPING = ("Crystal Forge statuses (public.derivation_statuses): queued = dry-run-complete 5"
           " (scheduled: not in the table, skipped); system build = build-pending 7,"
           " build-inprogress 8; build complete = build-complete 10; building = build-inprogress"
           " 8; cache pushed = cache-pushed 14")  # fmt: skip


def logged_by(project: DbtProject, *args: str, vars: dict | None = None) -> str:
    """What dbt logged running ``args`` (a warning's text is only there)."""
    log = PROJECT_DIR / os.environ.get("DBT_LOG_PATH", "logs") / "dbt.log"
    start = log.stat().st_size if log.exists() else 0
    run_dbt(project, *args, vars=vars)
    return log.read_bytes()[start:].decode(errors="replace")


@pytest.fixture(scope="module")
def statuses(database: Database, build: DbtOutcome) -> Iterator[tuple[DbtProject, str]]:
    """The example in Crystal Forge's shape and numbering built with source_schema only; the log."""
    db = create_scratch_database(database, scratch_name("statuses"))
    try:
        load_example(db)
        project = DbtProject(db, target="ci", schema=scratch_name("status_view"), quiet=False,
                             vars={"source_schema": "public"})  # fmt: skip
        yield project, logged_by(project, "build")
    finally:
        drop_database(database, db)


def test_the_build_looks_statuses_up_by_name(statuses: tuple[DbtProject, str]) -> None:
    """Rows on Crystal Forge's numbering: test_upgrades (only source_schema given there)."""
    project, log = statuses
    assert MAPPING in log
    with project.database.connect() as conn:
        view = f"{project.schema}.{VIEW}"
        definition = conn.execute("select pg_get_viewdef(%s::regclass)", [view]).fetchone()[0]
    assert "derivation_statuses" not in definition  # looked up at build time, not per query
    assert "status_id = 8" in definition and "ANY (ARRAY[10, 14])" in definition, definition


def test_deployment_settings_cannot_fail_the_unit_tests(statuses: tuple[DbtProject, str]) -> None:
    settings = {"queued_system_status_ids": [2], "build_complete_status_id": 11,
                "build_in_progress_status_id": 9, "cache_pushed_status_id": 13,
                "stale_heartbeat_threshold": "10 minutes"}  # fmt: skip
    outcome = run_dbt(statuses[0], "test", "--select", "test_type:unit", vars=settings)
    units = {k: v for k, v in outcome.node_statuses.items() if k.startswith("unit_test.")}
    assert len(units) >= 6 and set(units.values()) == {"pass"}, outcome.describe()


def test_explicit_ids_override_and_the_warn_test_names_them(
        statuses: tuple[DbtProject, str]) -> None:  # fmt: skip
    test = "assert_status_ids_match_status_names"
    log = logged_by(statuses[0], "build", "--select", test, vars={"build_complete_status_id": 6})
    assert f"{test}: build_complete_status_id = 6 is 'dry-run-failed' in" in log
    assert "public.derivation_statuses, not build-complete." in log


@pytest.mark.parametrize(("vars", "fragments"), [
    ({"cache_pushed_status": "pushed"},
     ["Status pushed (var cache_pushed_status) is not in public.derivation_statuses, which"
      " has: pending (1), queued (2), dry-run-pending (3), dry-run-inprogress (4), ",
      "cache-pushed (14). Fix: set var cache_pushed_status to a name from that list"]),
    ({"queued_system_statuses": ["scheduled"]},
     ["Status scheduled (var queued_system_statuses) is not in public.derivation_statuses"]),
])  # fmt: skip
def test_a_status_name_not_in_the_table_stops_the_build(
        statuses: tuple[DbtProject, str], vars: dict, fragments: list[str]) -> None:  # fmt: skip
    message = run_dbt(statuses[0], "run", vars=vars, expect_pass=False).describe()
    assert all(fragment in message for fragment in fragments) and message.count("Fix:") == 1


def test_without_a_statuses_table_explicit_ids_are_the_way(
        statuses: tuple[DbtProject, str]) -> None:  # fmt: skip
    project = statuses[0]
    with project.database.connect() as conn:
        conn.execute("alter table derivation_statuses rename to statuses_away")
    try:
        message = run_dbt(project, "run", expect_pass=False).describe()
        assert "table public.derivation_statuses does not exist" in message
        assert "give the ids explicitly, e.g. --vars '{queued_system_status_ids: [5]" in message
        run_dbt(project, "run", vars={
            "queued_system_status_ids": [5], "system_build_status_ids": [7, 8],
            "build_complete_status_id": 10, "build_in_progress_status_id": 8,
            "cache_pushed_status_id": 14})  # fmt: skip
    finally:
        with project.database.connect() as conn:
            conn.execute("alter table statuses_away rename to derivation_statuses")
