"""Crystal Forge's builder protocols (issue 18: its SQL, tables, statuses), view read per step."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.perf.corpus import compile_analyses
from support.crystal_forge import create_scratch_database, create_tables, drop_database
from support.grafana_checks import evaluate_rule
from support.grafana_files import rules_by_uid
from support.relations import run_dbt
from support.scratch import scratch_name

SHIFTED = {  # every timestamp the replay's time travel moves back
    "public.derivations": ["scheduled_at", "started_at", "completed_at"],
    "public.build_reservations": ["reserved_at", "heartbeat_at"],
    "build_queue_samples": ["sampled_at", "measured_at", "latest_heartbeat"]}  # fmt: skip


def status(name: str) -> str:
    return f"(select id from derivation_statuses where name = '{name}')"


EVALUATE = f"""with commit as (insert into commits (flake_id, git_commit_hash, commit_timestamp)
        values (1, md5(%(name)s), now()) returning id
    ), system as (insert into derivations (commit_id, derivation_type, derivation_name,
            derivation_path, status_id, attempt_count)
        select id, 'nixos', %(name)s, '/nix/store/' || md5(%(name)s) || '-nixos.drv',
            {status("dry-run-complete")}, %(attempts)s from commit returning id
    ), packages as (insert into derivations (derivation_type, derivation_name, derivation_path,
            status_id)
        select 'package', %(name)s || '-pkg-' || i, '/nix/store/' || md5(%(name)s || i) || '.drv',
            {status("dry-run-complete")} from generate_series(1, %(packages)s) as i returning id
    ), links as (insert into derivation_dependencies (derivation_id, depends_on_id)
        select system.id, packages.id from system cross join packages)
    select id from system"""
CLAIMABLE = f"""select d.id from derivations d join commits c on c.id = d.commit_id
    left join build_reservations br on br.derivation_id = d.id
    where d.derivation_type = 'nixos' and br.id is null and d.derivation_path is not null
        and d.status_id in ({status("dry-run-complete")}, {status("build-pending")})
        and d.attempt_count <= 5 order by c.commit_timestamp desc, d.id limit 1"""


@dataclass
class Forge:
    """Crystal Forge with the view, driven by its builder's SQL (build_reservations.rs etc.)."""

    db: Database
    project: DbtProject  # the view's; its run refreshes the queue history
    stalled_sql: str

    def sql(self, *statements: str, **params: Any) -> list[Any]:
        """The statements in one transaction, as one call of the builder; the last's rows."""
        search_path = f"-c search_path={self.project.schema},public"
        with self.db.connect(options=search_path) as conn, conn.transaction():
            for statement in statements:
                cursor = conn.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def evaluate(self, name: str, packages: int, attempts: int = 0) -> int:
        """The evaluator: a commit, the system and its packages, all dry-run-complete."""
        return self.sql(EVALUATE, name=name, packages=packages, attempts=attempts)[0][0]

    def claim(self, worker: str) -> int | None:
        """claim_next_derivation: the newest claimable system reserved, build-inprogress."""
        with self.db.connect() as conn, conn.transaction():
            if (found := conn.execute(CLAIMABLE).fetchone()) is None:
                return None
            conn.execute("insert into build_reservations (worker_id, derivation_id,"
                         " nixos_derivation_id) values (%s, %s, %s) on conflict (derivation_id)"
                         " do nothing", [worker, *found, *found])  # fmt: skip
            conn.execute(f"update derivations set status_id = {status('build-inprogress')},"
                         " started_at = now(), attempt_count = coalesce(attempt_count, 0) + 1"
                         f" where id = %s and status_id in ({status('dry-run-complete')},"
                         f" {status('build-pending')})", found)  # fmt: skip
        return found[0]

    def claim_package(self, worker: str, package: int, system: int) -> None:
        """The spec's package-level protocol: a package reserved for its system."""
        self.sql("insert into build_reservations (worker_id, derivation_id, nixos_derivation_id)"
                 " values (%(worker)s, %(package)s, %(system)s)",
                 f"update derivations set status_id = {status('build-inprogress')},"
                 " started_at = now() where id = %(package)s",
                 worker=worker, package=package, system=system)  # fmt: skip

    def heartbeat(self, worker: str) -> None:
        self.sql("update build_reservations set heartbeat_at = now() where worker_id = %(w)s",
                 w=worker)  # fmt: skip

    def wait(self, seconds: int) -> None:
        self.sql(*[f"update {table} set " + ", ".join(f"{c} = {c} - %(s)s * interval '1 second'"
                                                    for c in columns)
                   for table, columns in SHIFTED.items()], s=seconds)  # fmt: skip

    def cleanup(self) -> list[int]:
        """cleanup_stale_reservations, every 60 s: reservations silent for over 300 s."""
        stale = "delete from build_reservations where heartbeat_at < now() - interval '300 seconds'"
        reclaimed = [derivation for (derivation,) in self.sql(stale + " returning derivation_id")]
        self.sql(f"update derivations set status_id = {status('dry-run-complete')},"
                 " started_at = null where id = any(%(d)s)", d=reclaimed)  # fmt: skip
        return reclaimed

    def finish(self, worker: str, derivation: int, succeeded: bool = True) -> None:
        """mark_build_complete_and_release / mark_build_failed_and_release."""
        done = (f"status_id = {status('build-complete')}, store_path = '/nix/' || md5(id::text)"
                if succeeded else f"status_id = {status('build-failed')}, error_message = 'failed',"
                " attempt_count = attempt_count + 1")  # fmt: skip
        self.sql("delete from build_reservations where worker_id = %(w)s and derivation_id = %(d)s",
                 f"update derivations set {done}, completed_at = now() where id = %(d)s",
                 w=worker, d=derivation)  # fmt: skip

    def cache_pushed(self, derivation: int) -> None:
        self.sql(f"update derivations set status_id = {status('cache-pushed')} where id = %(d)s",
                 d=derivation)  # fmt: skip

    def row(self, system: int) -> tuple[Any, ...] | None:
        """The system's view row: the columns of WAITING below."""
        rows = self.sql("select status, total_packages, completed_packages, building_packages,"
            " pending_packages, cached_packages, worker_ids, has_stale_workers, cache_status,"
            " earliest_reservation is not null, latest_heartbeat is not null"
            " from view_build_queue_status where nixos_id = %(s)s", s=system)  # fmt: skip
        return tuple(rows[0]) if rows else None

    def stuck(self) -> list[int]:
        """The spec's "System stuck building" (var stuck_building_threshold: 2 hours)."""
        return [system for (system,) in self.sql(
            "select nixos_id from view_build_queue_status where status = 'building'"
            " and earliest_reservation < now() - interval '2 hours'")]  # fmt: skip

    def stalled_seconds(self) -> int:
        """ "Queue stalled" as the dbt analysis; the Grafana rule must agree on it."""
        ((analysis,),) = self.sql(f"select stalled_seconds from ({self.stalled_sql}) as alert")
        with self.db.connect(options=f"-c search_path={self.project.schema}") as conn:
            grafana = evaluate_rule(rules_by_uid()["buildqueue-queue-stalled"], conn)
        assert (grafana.firing, abs(analysis - (grafana.value or 0)) <= 1) == (analysis > 0, True)
        return analysis


@pytest.fixture(scope="module")
def deployed_forge(database: Database) -> Iterator[Forge]:
    """An empty Crystal Forge database with the view and the queue history deployed."""
    db = create_scratch_database(database, scratch_name("replay"))
    try:
        create_tables(db)
        project = DbtProject(db, target="ci", schema=scratch_name("replay_view"),
                             vars={"source_schema": "public"})  # fmt: skip
        run_dbt(project, "run")
        stalled = compile_analyses(project, "alert_queue_stalled")["alert_queue_stalled"]
        yield Forge(db, project, stalled)
    finally:
        drop_database(database, db)


@pytest.fixture
def forge(deployed_forge: Forge) -> Forge:
    """The forge with no work in it (each test replays its own systems)."""
    deployed_forge.sql("truncate derivation_dependencies, build_reservations, derivations,"
                       " commits, build_queue_samples")  # fmt: skip
    return deployed_forge


W0, W1 = "host-a-worker-0", "host-b-worker-1"
# status, total/completed/building/pending/cached, workers, stale, cache_status, has times
WAITING = ("pending", 3, 0, 0, 3, 0, [], False, None, False, False)
BUILT_BY_W0 = ("building", 3, 0, 3, 0, 0, [W0], False, None, True, True)
STALE_W0 = ("building", 3, 0, 3, 0, 0, [W0], True, None, True, True)
BUILT_BY_W1 = ("building", 3, 0, 3, 0, 0, [W1], False, None, True, True)


def test_system_level_protocol(forge: Forge) -> None:
    """Claimed, heartbeats, worker dies, stale, reclaimed, claimed, hangs 2 h, built, pushed."""
    system = forge.evaluate("alpha", packages=3)
    assert forge.row(system) == WAITING
    assert (forge.claim(W0), forge.row(system)) == (system, BUILT_BY_W0)
    forge.wait(30)
    forge.heartbeat(W0)
    assert forge.row(system) == BUILT_BY_W0
    forge.wait(290)  # the worker died right after that heartbeat
    assert (forge.row(system), forge.cleanup()) == (BUILT_BY_W0, [])  # 290 s: not yet 300
    forge.wait(20)  # 310 s: stale, until the next cleanup run
    assert (forge.row(system), forge.cleanup(), forge.row(system)) == (STALE_W0, [system], WAITING)
    assert (forge.claim(W1), forge.row(system), forge.stuck()) == (system, BUILT_BY_W1, [])
    forge.wait(2 * 3600 + 60)  # a build that hangs while its worker keeps heart-beating
    forge.heartbeat(W1)
    assert (forge.row(system), forge.stuck()) == (BUILT_BY_W1, [system])
    forge.finish(W1, system)
    assert forge.row(system) is None  # build-complete: out of the queue
    forge.cache_pushed(system)
    assert forge.row(system) is None


def test_a_failed_build_leaves_the_queue(forge: Forge) -> None:
    system = forge.evaluate("beta", packages=3)
    assert (forge.claim(W0), forge.row(system)) == (system, BUILT_BY_W0)
    forge.finish(W0, system, succeeded=False)
    assert (forge.row(system), forge.claim(W1)) == (None, None)  # build-failed: never claimed again


def test_a_system_past_five_attempts_waits_and_the_queue_stalls(forge: Forge) -> None:
    """Its 6th claim dies, nobody reclaims it: pending; "Queue stalled" after 10 quiet minutes."""
    system = forge.evaluate("gamma", packages=3, attempts=5)
    assert forge.claim(W0) == system
    run_dbt(forge.project, "run", "--select", "build_queue_samples")
    assert forge.stalled_seconds() == 0
    forge.wait(310)
    assert (forge.cleanup(), forge.claim(W1), forge.row(system)) == ([system], None, WAITING)
    run_dbt(forge.project, "run", "--select", "build_queue_samples")
    assert forge.stalled_seconds() == 0  # the last heartbeat is 310 s old
    forge.wait(300)
    assert 600 < forge.stalled_seconds() < 620


def test_the_stall_alert_sees_dead_builders_without_history(forge: Forge) -> None:
    """Every builder gone: nobody cleans up, the reservation keeps an old heartbeat."""
    system = forge.evaluate("epsilon", packages=2)
    assert forge.claim(W0) == system
    forge.wait(400)
    assert forge.stalled_seconds() == 0
    forge.wait(220)
    assert (forge.row(system)[7], 600 < forge.stalled_seconds() < 640) == (True, True)  # stale
    forge.sql("truncate derivation_dependencies, build_reservations, derivations, commits")
    assert forge.stalled_seconds() == 0  # nothing queued: nothing stalls


def test_package_level_protocol(forge: Forge) -> None:
    """The spec's protocol: packages claimed for their system, then the system's own build."""
    system = forge.evaluate("delta", packages=3)
    packages = "select depends_on_id from derivation_dependencies where derivation_id = %(s)s"
    first, second, third = [package for (package,) in forge.sql(packages + " order by 1", s=system)]
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
    assert forge.row(system) == ("ready_for_system_build", 3, 3, 0, 0, 1, [], False,
                                 "waiting_for_cache_push", False, False)  # fmt: skip
    assert forge.claim(W1) == system  # the system's own build
    assert forge.row(system) == ("building", 3, 3, 0, 0, 1, [W1], False,
                                 "waiting_for_cache_push", True, True)  # fmt: skip
    forge.finish(W1, system)
    assert forge.row(system) is None
