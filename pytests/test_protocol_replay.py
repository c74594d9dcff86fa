"""Crystal Forge's worker protocols replayed on a database in its shape, the view read after
every step.

Crystal Forge since its migration 0070 has its builders claim whole NixOS systems; the
spec describes workers claiming packages one by one. `Forge` drives one system through
each protocol with the SQL Crystal Forge's builder runs (packages/default/src/queries/
build_reservations.rs and derivations.rs: claim, heartbeat, the 60-second cleanup of
reservations silent for 300 s, completion, failure) on its own tables, keys, index names
and status numbering (support/crystal_forge_schema.sql). Time passes by moving every
timestamp back (`Forge.wait`), as it would for a worker that stops heart-beating.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR
from support.analyses import COMPILED_DIR
from support.crystal_forge import SCHEMA_SQL, create_scratch_database, drop_database
from support.scratch import scratch_name

VARS = {"source_schema": "public"}
CLEANUP_AFTER_SECONDS = 300
"""Crystal Forge's builders delete a reservation whose heartbeat is older than this."""

SHIFTED = {
    "public.derivations": ["scheduled_at", "started_at", "completed_at"],
    "public.build_reservations": ["reserved_at", "heartbeat_at"],
    "build_queue_samples": ["sampled_at", "measured_at", "latest_heartbeat"],
}
"""Every timestamp the replay's time travel moves (the samples table in the view's schema)."""


@dataclass
class Forge:
    """A Crystal Forge database with the view deployed, driven as its builders drive it."""

    db: Database
    schema: str
    project: DbtProject

    def sql(self, query: str, params: list[Any] | dict[str, Any] | None = None) -> list[Any]:
        with self.db.connect(options=f"-c search_path={self.schema},public") as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def status(self, name: str) -> int:
        ((status_id,),) = self.sql("select id from derivation_statuses where name = %s", [name])
        return status_id

    def evaluate(self, name: str, packages: int, attempts: int = 0) -> int:
        """The evaluator: a commit, the system and its packages, all dry-run-complete."""
        ((system,),) = self.sql(
            """
            with commit as (
                insert into commits (flake_id, git_commit_hash, commit_timestamp)
                values (1, md5(%(name)s), now()) returning id
            ), system as (
                insert into derivations (commit_id, derivation_type, derivation_name,
                    derivation_path, status_id, attempt_count)
                select id, 'nixos', %(name)s, '/nix/store/' || md5(%(name)s) || '-nixos.drv',
                    %(status)s, %(attempts)s
                from commit returning id
            ), packages as (
                insert into derivations (derivation_type, derivation_name, derivation_path,
                    status_id)
                select 'package', %(name)s || '-pkg-' || i,
                    '/nix/store/' || md5(%(name)s || i) || '-pkg.drv', %(status)s
                from generate_series(1, %(packages)s) as i returning id
            ), links as (
                insert into derivation_dependencies (derivation_id, depends_on_id)
                select system.id, packages.id from system cross join packages
            )
            select id from system
            """,
            {
                "name": name,
                "packages": packages,
                "attempts": attempts,
                "status": self.status("dry-run-complete"),
            },
        )
        return system

    def packages(self, system: int) -> list[int]:
        rows = self.sql(
            "select depends_on_id from derivation_dependencies where derivation_id = %s order by 1",
            [system],
        )
        return [package for (package,) in rows]

    def claim(self, worker: str) -> int | None:
        """A builder's claim (claim_next_derivation): the newest claimable system, reserved
        and set build-inprogress in one transaction; None when nothing is claimable."""
        pending, building = self.status("dry-run-complete"), self.status("build-pending")
        in_progress = self.status("build-inprogress")
        with self.db.connect() as conn, conn.transaction():
            found = conn.execute(
                """
                select d.id from derivations d
                join commits c on c.id = d.commit_id
                left join build_reservations br on br.derivation_id = d.id
                where d.derivation_type = 'nixos' and d.status_id in (%s, %s)
                    and d.derivation_path is not null and d.attempt_count <= 5
                    and br.id is null
                order by c.commit_timestamp desc, d.id limit 1
                """,
                [pending, building],
            ).fetchone()
            if found is None:
                return None
            conn.execute(
                "insert into build_reservations (worker_id, derivation_id, nixos_derivation_id)"
                " values (%s, %s, %s) on conflict (derivation_id) do nothing",
                [worker, found[0], found[0]],
            )
            conn.execute(
                "update derivations set status_id = %s, started_at = now(),"
                " attempt_count = coalesce(attempt_count, 0) + 1"
                " where id = %s and status_id in (%s, %s)",
                [in_progress, found[0], pending, building],
            )
        return found[0]

    def claim_package(self, worker: str, package: int, system: int) -> None:
        """The spec's package-level protocol: a package reserved for its system."""
        self.sql(
            "insert into build_reservations (worker_id, derivation_id, nixos_derivation_id)"
            " values (%s, %s, %s)",
            [worker, package, system],
        )
        self.sql(
            "update derivations set status_id = %s, started_at = now() where id = %s",
            [self.status("build-inprogress"), package],
        )

    def heartbeat(self, worker: str) -> None:
        self.sql(
            "update build_reservations set heartbeat_at = now() where worker_id = %s", [worker]
        )

    def wait(self, seconds: int) -> None:
        """Time passes: every timestamp moves ``seconds`` into the past."""
        for table, columns in SHIFTED.items():
            moves = ", ".join(f"{c} = {c} - make_interval(secs => %(s)s)" for c in columns)
            self.sql(f"update {table} set {moves}", {"s": seconds})

    def cleanup(self) -> list[int]:
        """A builder's cleanup (cleanup_stale_reservations), run every 60 s."""
        reclaimed = [
            derivation
            for (derivation,) in self.sql(
                "delete from build_reservations"
                " where heartbeat_at < now() - make_interval(secs => %s) returning derivation_id",
                [CLEANUP_AFTER_SECONDS],
            )
        ]
        for derivation in reclaimed:
            self.sql(
                "update derivations set status_id = %s, started_at = null where id = %s",
                [self.status("dry-run-complete"), derivation],
            )
        return reclaimed

    def finish(self, worker: str, derivation: int, succeeded: bool = True) -> None:
        """mark_build_complete_and_release / mark_build_failed_and_release: one transaction."""
        with self.db.connect() as conn, conn.transaction():
            conn.execute(
                "delete from build_reservations where worker_id = %s and derivation_id = %s",
                [worker, derivation],
            )
            if succeeded:
                conn.execute(
                    "update derivations set status_id = %s, completed_at = now(),"
                    " store_path = '/nix/store/' || md5(id::text) where id = %s",
                    [self.status("build-complete"), derivation],
                )
            else:
                conn.execute(
                    "update derivations set status_id = %s, error_message = 'build: failed',"
                    " attempt_count = attempt_count + 1, completed_at = now() where id = %s",
                    [self.status("build-failed"), derivation],
                )

    def cache_pushed(self, derivation: int) -> None:
        self.sql(
            "update derivations set status_id = %s where id = %s",
            [self.status("cache-pushed"), derivation],
        )

    def row(self, system: int) -> tuple[Any, ...] | None:
        """The view's row: status, total/completed/building/pending/cached, workers, stale,
        cache_status, and whether it has a reservation time and a heartbeat."""
        rows = self.sql(
            """
            select status, total_packages, completed_packages, building_packages,
                pending_packages, cached_packages, worker_ids, has_stale_workers, cache_status,
                earliest_reservation is not null, latest_heartbeat is not null
            from view_build_queue_status where nixos_id = %s
            """,
            [system],
        )
        return tuple(rows[0]) if rows else None

    def stuck(self) -> list[int]:
        """The spec's "System stuck building" query (var stuck_building_threshold: 2 hours)."""
        rows = self.sql(
            "select nixos_id from view_build_queue_status where status = 'building'"
            " and earliest_reservation < now() - interval '2 hours'"
        )
        return [system for (system,) in rows]

    def sample(self) -> None:
        """The scheduled sampler: `dbt run --select build_queue_samples`."""
        self.project.invoke("run", "--select", "build_queue_samples", vars=VARS)


@pytest.fixture(scope="module")
def forge(database: Database) -> Iterator[Forge]:
    """An empty Crystal Forge database (its schema, indexes and status catalogue) with the
    view and the queue history deployed as the README deploys them."""
    db = create_scratch_database(database, scratch_name("replay"))
    try:
        with db.connect() as conn:
            conn.execute(SCHEMA_SQL.read_text())
        schema = scratch_name("replay_view")
        project = DbtProject(db, target="ci", schema=schema)
        project.invoke("run", vars=VARS)
        yield Forge(db, schema, project)
    finally:
        drop_database(database, db)


@pytest.fixture
def forge_clean(forge: Forge) -> Forge:
    """The forge with no work in it (each test replays its own systems)."""
    forge.sql("truncate derivation_dependencies, build_reservations, derivations, commits")
    forge.sql("truncate build_queue_samples")
    return forge


W0, W1 = "host-a-worker-0", "host-b-worker-1"
# (status, total, completed, building, pending, cached, worker_ids, stale, cache_status,
#  has a reservation time, has a heartbeat)
WAITING = ("pending", 3, 0, 0, 3, 0, [], False, None, False, False)
BUILT_BY_W0 = ("building", 3, 0, 3, 0, 0, [W0], False, None, True, True)
STALE_W0 = ("building", 3, 0, 3, 0, 0, [W0], True, None, True, True)
BUILT_BY_W1 = ("building", 3, 0, 3, 0, 0, [W1], False, None, True, True)


def test_system_level_protocol(forge_clean: Forge) -> None:
    """evaluated -> claimed -> heartbeats -> worker dies -> stale -> reclaimed by the
    cleanup -> claimed again -> hung past 2 hours -> build complete -> cache pushed."""
    forge = forge_clean
    system = forge.evaluate("alpha", packages=3)
    assert forge.row(system) == WAITING
    assert forge.claim(W0) == system
    assert forge.row(system) == BUILT_BY_W0
    forge.wait(30)
    forge.heartbeat(W0)
    assert forge.row(system) == BUILT_BY_W0
    forge.wait(290)  # the worker died right after that heartbeat
    assert forge.row(system) == BUILT_BY_W0
    assert forge.cleanup() == []  # 290 s: not yet the cleanup's 300
    forge.wait(20)  # 310 s: stale, until the next cleanup run
    assert forge.row(system) == STALE_W0
    assert forge.cleanup() == [system]
    assert forge.row(system) == WAITING
    assert forge.claim(W1) == system
    assert forge.row(system) == BUILT_BY_W1
    assert forge.stuck() == []
    forge.wait(2 * 3600 + 60)  # a build that hangs while its worker keeps heart-beating
    forge.heartbeat(W1)
    assert forge.row(system) == BUILT_BY_W1
    assert forge.stuck() == [system]
    forge.finish(W1, system)
    assert forge.row(system) is None  # build-complete: out of the queue
    forge.cache_pushed(system)
    assert forge.row(system) is None


def test_a_failed_build_leaves_the_queue(forge_clean: Forge) -> None:
    forge = forge_clean
    system = forge.evaluate("beta", packages=3)
    assert forge.claim(W0) == system
    assert forge.row(system) == BUILT_BY_W0
    forge.finish(W0, system, succeeded=False)
    assert forge.row(system) is None
    assert forge.claim(W1) is None  # build-failed is never claimed again


def test_a_system_past_five_attempts_waits_and_the_queue_stalls(forge_clean: Forge) -> None:
    """Its sixth claim dies; the cleanup gives it back, and no builder will claim it again.
    It stays pending, and "Queue stalled" fires once no worker was seen for 10 minutes."""
    forge = forge_clean
    system = forge.evaluate("gamma", packages=3, attempts=5)
    assert forge.claim(W0) == system
    forge.sample()
    assert stalled_seconds(forge) == 0
    forge.wait(310)
    assert forge.cleanup() == [system]
    assert forge.claim(W1) is None
    assert forge.row(system) == WAITING
    forge.sample()
    assert stalled_seconds(forge) == 0  # the last heartbeat is 310 s old
    forge.wait(300)
    assert 600 < stalled_seconds(forge) < 620


def test_the_stall_alert_sees_dead_builders_without_history(forge_clean: Forge) -> None:
    """Every builder gone: nobody cleans up, the reservation stays with an old heartbeat."""
    forge = forge_clean
    system = forge.evaluate("epsilon", packages=2)
    assert forge.claim(W0) == system
    forge.wait(400)
    assert stalled_seconds(forge) == 0
    forge.wait(220)
    assert forge.row(system)[7] is True  # has_stale_workers
    assert 600 < stalled_seconds(forge) < 640
    forge.sql("truncate derivation_dependencies, build_reservations, derivations, commits")
    assert stalled_seconds(forge) == 0  # nothing queued: nothing stalls


def test_package_level_protocol(forge_clean: Forge) -> None:
    """The spec's protocol: packages claimed for their system, then the system's own build."""
    forge = forge_clean
    system = forge.evaluate("delta", packages=3)
    first, second, third = forge.packages(system)
    assert forge.row(system) == WAITING
    forge.claim_package(W0, first, system)
    assert forge.row(system) == ("building", 3, 0, 1, 2, 0, [W0], False, None, True, True)
    forge.claim_package(W1, second, system)
    assert forge.row(system) == ("building", 3, 0, 2, 1, 0, [W0, W1], False, None, True, True)
    forge.finish(W0, first)
    assert forge.row(system) == ("building", 3, 1, 1, 1, 0, [W1], False, None, True, True)
    forge.cache_pushed(first)
    assert forge.row(system) == ("building", 3, 1, 1, 1, 1, [W1], False, None, True, True)
    forge.finish(W1, second)
    forge.claim_package(W0, third, system)
    forge.finish(W0, third)
    ready = ("ready_for_system_build", 3, 3, 0, 0, 1, [], False, "waiting_for_cache_push")
    assert forge.row(system) == (*ready, False, False)
    assert forge.claim(W1) == system  # the system's own build
    assert forge.row(system) == (
        "building",
        3,
        3,
        0,
        0,
        1,
        [W1],
        False,
        "waiting_for_cache_push",
        True,
        True,
    )
    forge.finish(W1, system)
    assert forge.row(system) is None


def stalled_seconds(forge: Forge) -> int:
    """The "Queue stalled" alert, as the dbt analysis and as the Grafana rule (the same
    SQL with the var's default); both must agree on whether it fires."""
    forge.project.invoke("compile", "--select", "alert_queue_stalled", vars=VARS)
    compiled = (COMPILED_DIR / "alert_queue_stalled.sql").read_text()
    ((analysis,),) = forge.sql(f"select stalled_seconds from ({compiled}) as alert")
    with forge.db.connect(options=f"-c search_path={forge.schema}") as conn:
        grafana = _rule_value(conn)
    assert (analysis > 0, abs(analysis - grafana) <= 1) == (grafana > 0, True)
    return analysis


def _rule_value(conn: psycopg.Connection) -> int:
    alerting = yaml.safe_load(
        (PROJECT_DIR / "grafana/provisioning/alerting/buildqueue-alerts.yaml").read_text()
    )
    (rule,) = [
        rule
        for group in alerting["groups"]
        for rule in group["rules"]
        if rule["uid"] == "buildqueue-queue-stalled"
    ]
    (query,) = [node for node in rule["data"] if node["refId"] == "A"]
    with conn.cursor(row_factory=dict_row) as cursor:
        (row,) = cursor.execute(query["model"]["rawSql"]).fetchall()
    return row["stalled_seconds"]
