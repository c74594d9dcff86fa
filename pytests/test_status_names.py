"""Statuses by name: the build looks their ids up in the deployment's derivation_statuses.

The example is copied into a scratch schema renumbered the way Crystal Forge numbers its
statuses (10 build-complete, 12 build-failed, no `scheduled`): `dbt build` with nothing
but `source_schema` must give the same rows as on the spec's numbering, print the mapping
it used in one line, and the unit tests must pass whatever the deployment's settings.
"""

from __future__ import annotations

import json

import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtError, DbtOutcome, DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.report import fetch_rows
from support.example import EXPECTED_ROWS, copy_example
from support.scratch import EXAMPLE_SCHEMA, ScratchSchemas

# Crystal Forge's own derivation_statuses (issue 9).
CRYSTAL_FORGE_STATUSES = {
    "pending": 1,
    "queued": 2,
    "dry-run-pending": 3,
    "dry-run-inprogress": 4,
    "dry-run-complete": 5,
    "dry-run-failed": 6,
    "build-pending": 7,
    "build-inprogress": 8,
    "in-progress": 9,
    "build-complete": 10,
    "complete": 11,
    "build-failed": 12,
    "failed": 13,
    "cache-pushed": 14,
}
# Fixture statuses Crystal Forge does not have, and what they become there.
NOT_IN_CRYSTAL_FORGE = {"scheduled": "dry-run-complete", "cache-push-failed": "failed"}
MAPPING_LINE = (
    "queued = dry-run-complete 5 (scheduled: not in the table, skipped); "
    "system build = build-pending 7, build-inprogress 8; "
    "build complete = build-complete 10; building = build-inprogress 8; "
    "cache pushed = cache-pushed 14"
)


@pytest.fixture(scope="module")
def renumbered(database: Database, build: DbtOutcome, module_scratch_schema: ScratchSchemas) -> str:
    """A copy of the example in Crystal Forge's numbering, in a scratch schema."""
    schema = module_scratch_schema("status_names")
    with database.connect() as conn:
        copy_example(conn, schema, source=EXAMPLE_SCHEMA)
        conn.execute(f"alter table {schema}.derivation_statuses rename to fixture_statuses")
        conn.execute(
            f"create table {schema}.derivation_statuses"
            f" (like {schema}.fixture_statuses including all)"
        )
        for name, status_id in CRYSTAL_FORGE_STATUSES.items():
            conn.execute(
                f"insert into {schema}.derivation_statuses (id, name, display_order)"
                " values (%s, %s, %s)",
                [status_id, name, status_id],
            )
        # every derivation keeps its status name (or the nearest Crystal Forge has)
        conn.execute(
            f"""
            update {schema}.derivations as derivations
            set status_id = renumbered.id
            from {schema}.fixture_statuses as old
            inner join {schema}.derivation_statuses as renumbered
                on renumbered.name = coalesce((%s::jsonb ->> old.name), old.name)
            where derivations.status_id = old.id
            """,
            [json.dumps(NOT_IN_CRYSTAL_FORGE)],
        )
    return schema


@pytest.fixture(scope="module")
def view_schema(module_scratch_schema: ScratchSchemas) -> str:
    return module_scratch_schema("status_view")


@pytest.fixture(scope="module")
def deployed(database: Database, renumbered: str, view_schema: str) -> DbtOutcome:
    """`dbt build` with source_schema only: statuses are looked up by name."""
    project = DbtProject(database, target="ci", schema=view_schema, quiet=False)
    return project.invoke("build", vars={"source_schema": renumbered}, check=False)


def _log_lines() -> list[str]:
    return (PROJECT_DIR / "logs" / "dbt.log").read_text(errors="replace").splitlines()


def test_crystal_forge_numbering_needs_no_status_vars(
    database: Database, deployed: DbtOutcome, view_schema: str
) -> None:
    assert deployed.success, deployed.describe()
    with database.connect() as conn:
        rows = fetch_rows(conn, view_schema)
    assert [{key: row[key] for key in EXPECTED_ROWS[0]} for row in rows] == EXPECTED_ROWS


def test_the_build_prints_the_mapping_in_one_line(deployed: DbtOutcome, renumbered: str) -> None:
    expected = f"Crystal Forge statuses ({renumbered}.derivation_statuses): {MAPPING_LINE}"
    assert any(line.endswith(expected) for line in _log_lines()), expected


def test_the_view_compares_literal_ids(
    database: Database, deployed: DbtOutcome, view_schema: str
) -> None:
    with database.connect() as conn:
        definition = conn.execute(
            "select pg_get_viewdef(%s::regclass)", [f"{view_schema}.view_build_queue_status"]
        ).fetchone()[0]
    assert "derivation_statuses" not in definition
    assert "status_id = 8" in definition and "status_id = 14" in definition, definition
    assert "ANY (ARRAY[10, 14])" in definition, definition


def test_deployment_settings_cannot_fail_the_unit_tests(
    database: Database, renumbered: str, view_schema: str
) -> None:
    project = DbtProject(database, target="ci", schema=view_schema)
    outcome = project.invoke(
        "test",
        "--select",
        "test_type:unit",
        vars={
            "source_schema": renumbered,
            "queued_system_status_ids": [2],
            "build_complete_status_id": 11,
            "build_in_progress_status_id": 9,
            "cache_pushed_status_id": 13,
            "stale_heartbeat_threshold": "10 minutes",
        },
        check=False,
    )
    statuses = {k: v for k, v in outcome.node_statuses.items() if k.startswith("unit_test.")}
    assert len(statuses) >= 6 and set(statuses.values()) == {"pass"}, outcome.describe()


def test_explicit_ids_override_and_the_warn_test_names_them(
    database: Database, renumbered: str, view_schema: str
) -> None:
    """The spec's ids on Crystal Forge's numbering: used as given, and named as wrong."""
    project = DbtProject(database, target="ci", schema=view_schema, quiet=False)
    outcome = project.invoke(
        "build",
        "--select",
        "assert_status_ids_match_status_names",
        vars={"source_schema": renumbered, "build_complete_status_id": 6},
        check=False,
    )
    assert outcome.warnings and "assert_status_ids_match_status_names" in outcome.warnings[0]
    named = (
        "assert_status_ids_match_status_names: build_complete_status_id = 6 is "
        f"'dry-run-failed' in {renumbered}.derivation_statuses, not build-complete."
    )
    assert any(named in line for line in _log_lines()), named


def test_a_name_the_table_does_not_have_stops_the_build(
    database: Database, renumbered: str, view_schema: str
) -> None:
    project = DbtProject(database, target="ci", schema=view_schema)
    with pytest.raises(DbtError) as raised:
        project.invoke("build", vars={"source_schema": renumbered, "cache_pushed_status": "pushed"})
    message = str(raised.value)
    assert (
        f"Status pushed (var cache_pushed_status) is not in {renumbered}.derivation_statuses, "
        "which has: pending (1), queued (2)"
    ) in message, message
    assert "cache-pushed (14). Fix: set var cache_pushed_status to a name from that list" in message
    assert message.count("Fix:") == 1, message


def test_queued_names_need_one_that_resolves(
    database: Database, renumbered: str, view_schema: str
) -> None:
    project = DbtProject(database, target="ci", schema=view_schema)
    with pytest.raises(DbtError) as raised:
        project.invoke(
            "build", vars={"source_schema": renumbered, "queued_system_statuses": ["scheduled"]}
        )
    assert "Status scheduled (var queued_system_statuses) is not in" in str(raised.value)


def test_a_missing_statuses_table_says_how_to_give_ids(
    database: Database, renumbered: str, view_schema: str
) -> None:
    with database.connect() as conn:
        conn.execute(f"alter table {renumbered}.derivation_statuses rename to statuses_away")
    try:
        project = DbtProject(database, target="ci", schema=view_schema)
        with pytest.raises(DbtError) as raised:
            project.invoke("run", vars={"source_schema": renumbered})
        message = str(raised.value)
        assert f"table {renumbered}.derivation_statuses does not exist" in message, message
        assert "give the ids explicitly, e.g. --vars '{queued_system_status_ids: [5]" in message
        outcome = project.invoke(
            "run",
            vars={
                "source_schema": renumbered,
                "queued_system_status_ids": [5],
                "system_build_status_ids": [7, 8],
                "build_complete_status_id": 10,
                "build_in_progress_status_id": 8,
                "cache_pushed_status_id": 14,
            },
        )
        assert outcome.success
    finally:
        with database.connect() as conn:
            conn.execute(f"alter table {renumbered}.statuses_away rename to derivation_statuses")
