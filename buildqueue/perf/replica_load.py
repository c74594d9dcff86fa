"""How many view queries a hot standby serves, next to its primary: the replica load report.

    python -m buildqueue.perf.replica_load [--systems 1000] [--packages 200] [--clients 1 4]
                                      [--seconds 20]
    python -m buildqueue.perf.replica_load --conflicts

Starts a primary and a hot standby on 127.0.0.1 (`buildqueue.perf.replica`), loads a synthetic
fleet on the primary (`buildqueue.perf.fleet.load_fleet`, the generator `./run load` and the
benchmark use), deploys the view there with dbt, waits until the standby has replayed it,
then runs the load machinery's Grafana-like pollers (`buildqueue.perf.load.Pollers`: one
connection each, one autocommit query after another, every row fetched) for each client
count:

* against the primary alone,
* against the standby alone,
* against both at once (``clients`` pollers on each).

It prints queries/s, p50 and p99 per run, and the machine's load average, because the
numbers are only as good as the machine is quiet. Both servers run on this one machine:
in the "both" run they share its cores, so what it shows is what a replica on the SAME
host adds (docs/replicas.md says what the runs mean for a replica on a host of its own).

``--conflicts`` measures instead what replay does to the standby's readers: pollers read
the view on the standby while the primary redeploys it and churns and vacuums a source
table, once per standby setting of ``max_standby_streaming_delay`` and
``hot_standby_feedback``, and it prints how many queries replay cancelled
("canceling statement due to conflict with recovery"), by reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

from psycopg import sql

from buildqueue.database import Database, DatabaseError
from buildqueue.dbt import DbtError, DbtProject
from buildqueue.perf.fleet import FleetShape
from buildqueue.perf.load import (
    LOAD_SOURCE_SCHEMA,
    LOAD_VIEW_SCHEMA,
    Pollers,
    PollStats,
    percentile,
)
from buildqueue.perf.loader import load_fleet
from buildqueue.perf.replica import ReplicaError, ReplicaPair, replicated_pair
from buildqueue.report import view_query


@dataclass
class LoadRun:
    """One timed run: pollers against one server (or one side of a run against both)."""

    where: str
    clients: int
    seconds: float
    stats: PollStats

    @property
    def throughput(self) -> float:
        return len(self.stats.latencies) / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        latencies = self.stats.latencies
        return (
            f"{self.where:<15} {self.clients:>7} {self.throughput:>10.1f} "
            f"{percentile(latencies, 0.5) * 1000:>9.0f} {percentile(latencies, 0.99) * 1000:>9.0f}"
            f" {len(self.stats.errors):>6}"
        )


@dataclass
class ReplicaLoad:
    """Every run of `measure_replica_load`, with what the numbers were measured on."""

    systems: int
    packages: int
    replay_seconds: float
    runs: list[LoadRun] = field(default_factory=list)
    load_average: list[tuple[float, float, float]] = field(default_factory=list)

    def describe(self) -> str:
        header = (
            f"{'where':<15} {'clients':>7} {'queries/s':>10} {'p50 ms':>9} {'p99 ms':>9} errors"
        )
        lines = [
            f"view_build_queue_status on a {self.systems} x {self.packages} fleet, primary and"
            " hot standby on this one machine (127.0.0.1)",
            f"standby replayed the fleet load and deploy in {self.replay_seconds:.2f}s",
            header,
        ]
        for run in self.runs:
            lines.append(run.row())
            if run.where == "both: standby":
                both = [r for r in self.runs if r.clients == run.clients and "both" in r.where]
                total = sum(r.throughput for r in both)
                lines.append(f"{'both: total':<15} {run.clients * 2:>7} {total:>10.1f}")
        loads = ", ".join(" ".join(f"{value:.1f}" for value in load) for load in self.load_average)
        lines.append(f"load average (1/5/15 min) before, between and after the runs: {loads}")
        lines.append(
            f"{os.cpu_count()} CPUs, shared with whatever else runs here: compare runs of one"
            " report, not reports of different days"
        )
        first = next((r.stats.errors[0] for r in self.runs if r.stats.errors), None)
        if first:
            lines.append(f"first error: {first}")
        return "\n".join(lines)


def _poll(db: Database, schema: str, clients: int, seconds: float) -> tuple[float, PollStats]:
    with Pollers(db, schema, clients) as pollers:
        time.sleep(seconds)
    return pollers.seconds, pollers.stats


def _warm_up(databases: Sequence[Database], schema: str, queries: int = 3) -> None:
    """A few queries on each server first, so no run pays for a cold cache alone."""
    for db in databases:
        with db.connect() as conn:
            for _ in range(queries):
                conn.execute(view_query(schema)).fetchall()


def measure_replica_load(
    pair: ReplicaPair,
    *,
    systems: int = 1000,
    packages: int = 200,
    clients: Sequence[int] = (1, 4),
    seconds: float = 20.0,
    source_schema: str = LOAD_SOURCE_SCHEMA,
    view_schema: str = LOAD_VIEW_SCHEMA,
) -> ReplicaLoad:
    """Load a fleet and deploy on ``pair``'s primary, then poll primary, standby and both."""
    project = DbtProject(pair.primary, target="ci", schema=view_schema)
    with pair.primary.connect() as conn:
        load_fleet(project, conn, source_schema, FleetShape(systems=systems, packages=packages))
    project.invoke("run", vars={"source_schema": source_schema})
    result = ReplicaLoad(systems, packages, pair.wait_for_replay())
    _warm_up([pair.primary, pair.standby], view_schema)
    result.load_average.append(os.getloadavg())
    for count in clients:
        for where, db in (("primary", pair.primary), ("standby", pair.standby)):
            elapsed, stats = _poll(db, view_schema, count, seconds)
            result.runs.append(LoadRun(where, count, elapsed, stats))
        with ExitStack() as both:
            primary = both.enter_context(Pollers(pair.primary, view_schema, count))
            standby = both.enter_context(Pollers(pair.standby, view_schema, count))
            time.sleep(seconds)
        for where, pollers in (("both: primary", primary), ("both: standby", standby)):
            result.runs.append(LoadRun(where, count, pollers.seconds, pollers.stats))
        result.load_average.append(os.getloadavg())
    return result


CONFLICT_SETTINGS = (("0", "off"), ("0", "on"), ("30s", "off"), ("30s", "on"))
"""(max_standby_streaming_delay, hot_standby_feedback) pairs; 30s and off are the defaults."""


@dataclass
class ConflictRun:
    """Readers on the standby under one setting, while the primary redeploys and vacuums."""

    delay: str
    feedback: str
    stats: PollStats

    def describe(self) -> str:
        reasons = Counter(
            error.split("DETAIL:")[-1].split("HINT:")[0].strip() for error in self.stats.errors
        )
        detail = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common())
        return (
            f"max_standby_streaming_delay={self.delay:<4} hot_standby_feedback={self.feedback:<3}"
            f" {self.stats.queries:>6} queries, {len(self.stats.errors):>3} cancelled"
            + (f": {detail}" if detail else "")
        )


def _configure_standby(pair: ReplicaPair, delay: str, feedback: str) -> None:
    with pair.standby.connect() as standby:
        standby.execute(
            sql.SQL("alter system set max_standby_streaming_delay = {}").format(sql.Literal(delay))
        )
        standby.execute(
            sql.SQL("alter system set hot_standby_feedback = {}").format(sql.Literal(feedback))
        )
        standby.execute("select pg_reload_conf()")
        for _ in range(100):  # the reload is asynchronous
            shown = standby.execute(
                "select current_setting('max_standby_streaming_delay'),"
                " current_setting('hot_standby_feedback')"
            ).fetchone()
            if shown == (delay, feedback):
                return
            time.sleep(0.05)
    raise ReplicaError(f"The standby did not take {delay=}, {feedback=} (shows {shown}).")


def measure_conflicts(
    pair: ReplicaPair,
    *,
    redeploys: int = 5,
    churn_rounds: int = 20,
    pollers: int = 3,
    view_schema: str = "buildqueue_replica_conflicts",
    settings: Sequence[tuple[str, str]] = CONFLICT_SETTINGS,
) -> list[ConflictRun]:
    """Poll the view on the standby while the primary redeploys it and vacuums a source.

    The example fixtures are loaded on the primary; each round inserts and deletes 500
    reservations (ids past the example's) and vacuums the table, which is what makes
    replay remove row versions and truncate the table under the standby's readers.
    """
    project = DbtProject(pair.primary, target="ci", schema=view_schema)
    project.load_fixtures()
    project.invoke("run")
    reservations = sql.Identifier(project.settings()["source_schema"], "build_reservations")
    runs = []
    for delay, feedback in settings:
        _configure_standby(pair, delay, feedback)
        pair.wait_for_replay()
        with Pollers(pair.standby, view_schema, pollers) as polling:
            for _ in range(redeploys):
                project.invoke("run")
            with pair.primary.connect() as primary:
                for _ in range(churn_rounds):
                    primary.execute(
                        sql.SQL(
                            "insert into {} (worker_id, derivation_id)"
                            " select 'churn-' || n, 1000000 + n from generate_series(1, 500) n"
                        ).format(reservations)
                    )
                    primary.execute(
                        sql.SQL("delete from {} where worker_id like 'churn-%'").format(
                            reservations
                        )
                    )
                    primary.execute(sql.SQL("vacuum {}").format(reservations))
            pair.wait_for_replay()
        runs.append(ConflictRun(delay, feedback, polling.stats))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m buildqueue.perf.replica_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--systems", type=int, default=1000, help="queued systems (1000)")
    parser.add_argument("--packages", type=int, default=200, help="packages per system (200)")
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[1, 4], help="pollers per server (1 4)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each run (20)")
    parser.add_argument(
        "--conflicts", action="store_true", help="count queries replay cancels, per setting"
    )
    args = parser.parse_args(argv)
    try:
        with replicated_pair() as pair:
            print(
                f"standby started in {pair.standby_start_seconds:.2f}s "
                f"(base backup {pair.timings['base_backup']:.2f}s)",
                flush=True,
            )
            if args.conflicts:
                lines = [run.describe() for run in measure_conflicts(pair)]
                lines.append(f"load average (1/5/15 min): {os.getloadavg()}, shared machine")
            else:
                lines = [
                    measure_replica_load(
                        pair,
                        systems=args.systems,
                        packages=args.packages,
                        clients=args.clients,
                        seconds=args.seconds,
                    ).describe()
                ]
    except (DatabaseError, DbtError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
