"""How many Grafana viewers one server carries: `buildqueue load` (issue 11, point 3).

A *viewer* is one open dashboard refreshing every R seconds. Per refresh it sends exactly
the queries the dashboard sends: every panel target in grafana/dashboards/build-queue.json
that carries SQL, with Grafana's macros expanded (`buildqueue.grafana_files.expand_macros`) for
the dashboard's time range ending at that refresh. Panels on the built-in Dashboard data
source (uid ``-- Dashboard --``) reuse another panel's result and send nothing. Grafana's
alert rules (grafana/provisioning/alerting/) run on their own, each rule's queries once
per group interval, spread across the interval, whatever the number of viewers.

The simulation is open-loop, as a Grafana server is: refreshes are scheduled at their
times whether or not earlier ones have returned, and go through one pool of connections
the size of the data source's ``maxOpenConns`` (Grafana queues the rest). A query's
latency runs from its scheduled time to its last row, so time spent waiting for a pooled
connection counts, as the viewer sees it.

Queries are checked once before a run with ``explain``: a target whose relation does not
exist in the load schema (a table another change adds, a view not built) is skipped and
reported, never created.

`find_capacity` searches the largest V that keeps p99 <= the limit with no errors: V
doubles from 1 until a run fails, then bisects; every step is a run of ``step_seconds``.
"""

from __future__ import annotations

import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors, sql

from buildqueue.database import Database, DatabaseError
from buildqueue.dbt import DbtProject
from buildqueue.paths import SCRATCH_DIR
from buildqueue.perf import grafana_files
from buildqueue.perf.benchmark import machine, parse_shape, refuses_production_target
from buildqueue.perf.fleet import FleetShape
from buildqueue.perf.load import LOAD_SOURCE_SCHEMA, LOAD_VIEW_SCHEMA, percentile
from buildqueue.perf.loader import load_fleet
from buildqueue.report import view_query

DASHBOARD_DATASOURCE_UID = "-- Dashboard --"
"""Grafana's built-in data source that serves a panel from another panel's results."""

DEFAULT_POOL_SIZE = 100
"""Grafana's own default for maxOpenConns when the data source file sets none."""


class LoadError(Exception):
    """A dashboard or alert query cannot be run; the message says which and why."""


@dataclass(frozen=True)
class QueryTemplate:
    """One query as Grafana sends it: its origin, its SQL and its time range."""

    key: str
    """``panel <id> <refId>`` or ``alert <uid> <refId>``."""
    raw_sql: str
    span: timedelta
    """The time range ends at the refresh (or evaluation) and reaches back this far."""
    offset: timedelta = timedelta(0)

    def render(self, now: datetime) -> str:
        end = now - self.offset
        return grafana_files.expand_macros(
            self.raw_sql, grafana_files.TimeRange(end - self.span, end)
        )


@dataclass(frozen=True)
class AlertRule:
    """One alert rule's data-source queries and the interval they run at."""

    uid: str
    interval: float
    queries: tuple[QueryTemplate, ...]


@dataclass
class Workload:
    """What the simulation sends: per refresh, per alert interval, and what it skips."""

    refresh_queries: list[QueryTemplate]
    alert_rules: list[AlertRule]
    skipped: list[str] = field(default_factory=list)
    """One line per target not sent, saying why."""
    pool_size: int = DEFAULT_POOL_SIZE

    def describe(self) -> str:
        lines = [
            f"per refresh: {len(self.refresh_queries)} queries "
            f"({', '.join(q.key for q in self.refresh_queries) or 'none'})",
            f"alert rules: {len(self.alert_rules)} "
            + ", ".join(f"{rule.uid} every {rule.interval:g}s" for rule in self.alert_rules),
            f"connection pool: {self.pool_size} (the data source's maxOpenConns)",
        ]
        lines += [f"skipped: {line}" for line in self.skipped]
        return "\n".join(lines)


# --- what the dashboard sends -----------------------------------------------------------


def _relative(text: str) -> timedelta:
    """``now-30d`` -> 30 days, ``now`` -> 0 (Grafana's relative time, whole units)."""
    text = str(text).strip()
    if text == "now":
        return timedelta(0)
    if not text.startswith("now-"):
        raise LoadError(f"dashboard time {text!r}: only relative times (now-30d) are supported")
    return timedelta(seconds=grafana_files.parse_interval(text.removeprefix("now-")))


def _datasource_uid(panel: dict[str, Any], target: dict[str, Any]) -> str | None:
    for ref in (target.get("datasource"), panel.get("datasource")):
        if isinstance(ref, dict) and ref.get("uid"):
            return str(ref["uid"])
    return None


def dashboard_queries(dashboard: dict[str, Any]) -> tuple[list[QueryTemplate], list[str]]:
    """The SQL queries one refresh sends, and a line per target that sends none."""
    time_range = dashboard.get("time") or {"from": "now-6h", "to": "now"}
    end_offset = _relative(time_range.get("to", "now"))
    span = _relative(time_range.get("from", "now-6h")) - end_offset
    sent, not_sent = [], []
    for panel, target in grafana_files.panel_targets(dashboard):
        key = f"panel {panel.get('id')} {target.get('refId')}"
        if _datasource_uid(panel, target) == DASHBOARD_DATASOURCE_UID:
            not_sent.append(f"{key}: Dashboard data source (reuses panel {target.get('panelId')})")
        elif not str(target.get("rawSql") or "").strip():
            not_sent.append(f"{key}: no SQL")
        else:
            sent.append(QueryTemplate(key, target["rawSql"], span, end_offset))
    return sent, not_sent


def alert_workload(alerting: dict[str, Any]) -> list[AlertRule]:
    """Every alert rule's data-source queries, with its group's evaluation interval."""
    rules = []
    for group, rule in grafana_files.alert_rules(alerting):
        interval = grafana_files.parse_interval(str(group.get("interval", "1m")))
        queries = []
        for item in grafana_files.rule_queries(rule):
            window = item.get("relativeTimeRange") or {}
            start, end = window.get("from", 600), window.get("to", 0)
            queries.append(
                QueryTemplate(
                    f"alert {rule.get('uid')} {item.get('refId')}",
                    (item.get("model") or {}).get("rawSql", ""),
                    timedelta(seconds=start - end),
                    timedelta(seconds=end),
                )
            )
        rules.append(AlertRule(str(rule.get("uid")), interval, tuple(queries)))
    return rules


def pool_size(datasources: dict[str, Any]) -> int:
    """The first data source's maxOpenConns (Grafana's default when unset)."""
    for source in datasources.get("datasources", []):
        value = (source.get("jsonData") or {}).get("maxOpenConns")
        return int(value) if value else DEFAULT_POOL_SIZE
    return DEFAULT_POOL_SIZE


def read_workload(dashboard: Path = grafana_files.DASHBOARD_FILE) -> Workload:
    """The workload as the files in grafana/ describe it today (read at run time)."""
    refresh, skipped = dashboard_queries(grafana_files.load_dashboard(dashboard))
    rules = alert_workload(grafana_files.load_yaml(grafana_files.ALERTING_FILE))
    pool = pool_size(grafana_files.load_yaml(grafana_files.DATASOURCES_FILE))
    return Workload(refresh, rules, skipped, pool)


def connect_to_view(db: Database, schema: str) -> psycopg.Connection:
    """An autocommit connection whose search_path is the view's schema, as the reader's is."""
    return db.connect(autocommit=True, options=f"-c search_path={schema}")


def check_relations(conn: psycopg.Connection, workload: Workload) -> Workload:
    """Drop the queries whose relations do not exist (listed in ``skipped``).

    Each query is planned with ``explain`` (nothing runs). A missing relation skips the
    query; any other planning error is a `LoadError`: the dashboard itself is broken.
    """
    now = datetime.now(UTC)
    skipped = list(workload.skipped)

    def runnable(template: QueryTemplate) -> bool:
        try:
            conn.execute(sql.SQL("explain ") + sql.SQL(template.render(now)))  # type: ignore[arg-type]
        except errors.UndefinedTable as error:
            skipped.append(f"{template.key}: {error.diag.message_primary} in the load schema")
            return False
        except (psycopg.Error, grafana_files.GrafanaError) as error:
            raise LoadError(f"{template.key} cannot run: {str(error).strip()}") from error
        return True

    refresh = [q for q in workload.refresh_queries if runnable(q)]
    rules = []
    for rule in workload.alert_rules:
        queries = tuple(q for q in rule.queries if runnable(q))
        if queries:
            rules.append(AlertRule(rule.uid, rule.interval, queries))
    return Workload(refresh, rules, skipped, workload.pool_size)


# --- one run ----------------------------------------------------------------------------


@dataclass
class RunStats:
    """What one run saw: latencies (s) of viewer and alert queries, errors, what was sent."""

    viewers: int
    refresh: float
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    alert_latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    """How many times each query key was due: sent, or dropped at the end of the run."""
    last_sent: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    """Per key, the last SQL text sent (macros expanded) and the time it was rendered for."""
    dropped: int = 0
    """Queries still waiting for a connection at the end of the run (never sent)."""

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)

    def passes(self, limit: float) -> bool:
        """p99 within ``limit`` seconds and no error (dashboard or alert)."""
        return bool(self.latencies) and not self.errors and self.p99 <= limit

    def describe(self) -> str:
        ms = 1000
        alerts = (
            f"; alert queries {len(self.alert_latencies)}, max "
            f"{max(self.alert_latencies) * ms:.0f} ms"
            if self.alert_latencies
            else ""
        )
        return (
            f"V={self.viewers:<4} R={self.refresh:g}s: {len(self.latencies)} queries in "
            f"{self.seconds:.1f}s ({len(self.latencies) / max(self.seconds, 1e-9):.1f}/s), "
            f"p50 {self.p50 * ms:.0f} ms, p99 {self.p99 * ms:.0f} ms, "
            f"errors {len(self.errors)}{alerts}"
            + (f", {self.dropped} never started (backlog)" if self.dropped else "")
            + (f" (first: {self.errors[0]})" if self.errors else "")
        )


@dataclass(order=True)
class _Job:
    due: float
    key: str = field(compare=False)
    template: QueryTemplate = field(compare=False)
    alert: bool = field(compare=False, default=False)


def _schedule(workload: Workload, viewers: int, refresh: float, seconds: float) -> list[_Job]:
    """Every query of the run with its due time (s from the start), in time order.

    Viewers are spread evenly over one refresh period (they do not open the dashboard in
    the same instant); alert rules evenly over their interval, each in the middle of its
    slot (with three rules at 1 m: at 10 s, 30 s and 50 s).
    """
    jobs = []
    for viewer in range(viewers):
        start = refresh * viewer / viewers
        tick = start
        while tick < seconds:
            jobs += [_Job(tick, q.key, q) for q in workload.refresh_queries]
            tick += refresh
    for index, rule in enumerate(workload.alert_rules):
        # mid-slot, so the first rule does not land on the first viewer's first refresh
        tick = rule.interval * (index + 0.5) / len(workload.alert_rules)
        while tick < seconds:
            jobs += [_Job(tick, q.key, q, alert=True) for q in rule.queries]
            tick += rule.interval
    return sorted(jobs)


def run_workload(
    db: Database,
    schema: str,
    workload: Workload,
    viewers: int,
    refresh: float,
    seconds: float,
    grace: float = 1.0,
) -> RunStats:
    """V viewers refreshing every R seconds, plus the alert rules, for ``seconds``.

    Queries not started ``grace`` seconds after the end are dropped and counted (with the
    latency they had reached): a backlog means the run failed anyway.
    """
    stats = RunStats(viewers, refresh)
    schedule = _schedule(workload, viewers, refresh, seconds)
    size = max(1, min(workload.pool_size, len(schedule)))
    connections = [connect_to_view(db, schema) for _ in range(size)]  # opened before t=0
    run = _OpenLoopRun(db, schema, stats, started=time.perf_counter())
    threads = [threading.Thread(target=run.work, args=(conn,), daemon=True) for conn in connections]
    for thread in threads:
        thread.start()
    run.feed(schedule)
    # queries still waiting for a connection after the run (plus the grace) are dropped:
    # their latency is already past the grace, and draining a backlog only wastes time
    time.sleep(max(0.0, run.started + seconds + grace - time.perf_counter()))
    run.drop_backlog()
    for _ in threads:
        run.jobs.put(None)
    for thread in threads:
        thread.join()
    stats.seconds = time.perf_counter() - run.started
    return stats


@dataclass
class _OpenLoopRun:
    """One run's shared state: the queue the pool's threads take jobs from at their due
    times, and the stats they record into under one lock."""

    db: Database
    schema: str
    stats: RunStats
    started: float
    """`time.perf_counter()` at t=0 of the schedule."""
    jobs: queue.Queue[_Job | None] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, schedule: list[_Job]) -> None:
        """Queue each job at its due time, whether or not earlier ones have returned."""
        for job in schedule:
            delay = self.started + job.due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.jobs.put(job)

    def work(self, conn: psycopg.Connection) -> None:
        """One pooled connection: send jobs until the queue hands it None, then close."""
        while (job := self.jobs.get()) is not None:
            conn = self._send(conn, job)
        conn.close()

    def _send(self, conn: psycopg.Connection, job: _Job) -> psycopg.Connection:
        """Render and run one query, record it; the connection to use next (a new one
        when this one was closed or broken)."""
        now = datetime.now(UTC)
        text = job.template.render(now)
        error = None
        try:
            if conn.closed or conn.broken:
                conn = connect_to_view(self.db, self.schema)
            conn.execute(text).fetchall()  # type: ignore[arg-type]
        except (psycopg.Error, DatabaseError) as failure:
            error = f"{job.key}: {type(failure).__name__}: {str(failure).strip()}"
        latency = self._latency(job)
        with self.lock:
            self._count(job)
            self.stats.last_sent[job.key] = (now, text)
            if error:
                self.stats.errors.append(error)
            else:
                self._record_latency(job, latency)
        return conn

    def drop_backlog(self) -> None:
        """Take the jobs no connection started; count each as sent and dropped, with the
        latency it had reached."""
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                with self.lock:
                    self.stats.dropped += 1
                    self._count(job)
                    self._record_latency(job, self._latency(job))

    def _latency(self, job: _Job) -> float:
        """Seconds from the job's due time to now."""
        return time.perf_counter() - self.started - job.due

    def _count(self, job: _Job) -> None:
        """One more of the job's query key due (sent or dropped)."""
        self.stats.sent[job.key] = self.stats.sent.get(job.key, 0) + 1

    def _record_latency(self, job: _Job, latency: float) -> None:
        """A dashboard or alert query's latency, into the list its kind goes to."""
        (self.stats.alert_latencies if job.alert else self.stats.latencies).append(latency)


# --- the search ---------------------------------------------------------------------------


@dataclass
class Capacity:
    """The largest V that passed at one refresh period, and every step that led to it."""

    refresh: float
    viewers: int
    """0 when even one viewer fails."""
    capped: bool
    """True when the search stopped at ``max_viewers`` still passing."""
    steps: list[RunStats] = field(default_factory=list)

    def label(self) -> str:
        return f">= {self.viewers}" if self.capped else str(self.viewers)


def find_capacity(
    run: Callable[[int], RunStats],
    refresh: float,
    *,
    limit: float = 1.0,
    max_viewers: int = 256,
    log: Callable[[str], None] = print,
) -> Capacity:
    """Double V from 1 until a run fails (or ``max_viewers``), then bisect."""
    steps: list[RunStats] = []

    def passes(viewers: int) -> bool:
        result = run(viewers)
        steps.append(result)
        log(f"    {result.describe()} -> {'ok' if result.passes(limit) else 'too slow'}")
        return result.passes(limit)

    good, bad = 0, None
    viewers = 1
    while viewers <= max_viewers:
        if not passes(viewers):
            bad = viewers
            break
        good = viewers
        if viewers == max_viewers:
            break
        viewers = min(viewers * 2, max_viewers)
    if bad is None:
        return Capacity(refresh, good, True, steps)
    while bad - good > 1:
        middle = (good + bad) // 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    return Capacity(refresh, good, False, steps)


def iter_steps(capacities: list[Capacity]) -> Iterator[RunStats]:
    for capacity in capacities:
        yield from capacity.steps


# --- `buildqueue load` ------------------------------------------------------------------

DEFAULT_FLEETS = ("100x100", "1000x200", "1000x1000")
DEFAULT_REFRESHES = (1.0, 5.0)
OUTPUT_DIR = SCRATCH_DIR / "load"


@dataclass
class FleetCapacity:
    """One fleet's capacities, one per refresh period."""

    shape: FleetShape
    dependency_rows: int
    view_median: float
    """``select * from view_build_queue_status`` alone, median of a few runs (s)."""
    workload: Workload
    capacities: list[Capacity] = field(default_factory=list)


def view_median(db: Database, schema: str, runs: int = 5) -> float:
    """The view alone, after a warm-up: the cost one query puts on the server."""
    with connect_to_view(db, schema) as conn:
        conn.execute(view_query(schema)).fetchall()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            conn.execute(view_query(schema)).fetchall()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_fleet(
    project: DbtProject,
    shape: FleetShape,
    refreshes: tuple[float, ...],
    *,
    step_seconds: float,
    limit: float,
    max_viewers: int,
    source_schema: str = LOAD_SOURCE_SCHEMA,
    dashboard: Path = grafana_files.DASHBOARD_FILE,
    log: Callable[[str], None] = print,
) -> FleetCapacity:
    """Load the fleet, build the view over it, then search the capacity for each R."""
    db = project.database
    log(f"[{shape.label}] loading the fleet ...")
    with db.connect() as conn:
        loaded = load_fleet(project, conn, source_schema, shape)
    log(f"[{shape.label}] {loaded.describe()}")
    project.invoke("run", vars={"source_schema": source_schema})
    schema = project.schema or LOAD_VIEW_SCHEMA
    with connect_to_view(db, schema) as conn:
        workload = check_relations(conn, read_workload(dashboard))
    if not workload.refresh_queries:
        raise LoadError(
            "the dashboard sends no query this load schema can answer: "
            + "; ".join(workload.skipped)
        )
    result = FleetCapacity(
        shape, loaded.rows["derivation_dependencies"], view_median(db, schema), workload
    )
    log(f"[{shape.label}] view alone: {result.view_median * 1000:.0f} ms; {workload.describe()}")
    for refresh in refreshes:
        log(f"[{shape.label}] R = {refresh:g}s, {step_seconds:g}s per step:")
        result.capacities.append(
            find_capacity(
                lambda viewers, refresh=refresh: run_workload(
                    db, schema, workload, viewers, refresh, step_seconds, grace=limit
                ),
                refresh,
                limit=limit,
                max_viewers=max_viewers,
                log=log,
            )
        )
    return result


def format_table(results: list[FleetCapacity], limit: float) -> str:
    """The capacity table (Markdown): the largest V per fleet and refresh period."""
    refreshes = [capacity.refresh for capacity in results[0].capacities] if results else []
    lines = [
        "| fleet (systems x packages) | dependency rows | view alone (median) | "
        "queries per refresh | " + " | ".join(f"viewers at R = {r:g} s" for r in refreshes) + " |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in refreshes) + " |",
    ]
    for result in results:
        lines.append(
            f"| {result.shape.label} | {result.dependency_rows:,} | "
            f"{result.view_median * 1000:.0f} ms | {len(result.workload.refresh_queries)} | "
            + " | ".join(capacity.label() for capacity in result.capacities)
            + " |"
        )
    lines.append(f"\nviewers: the largest V with p99 <= {limit:g} s and no errors")
    return "\n".join(lines)


def run_capacity(
    project: DbtProject,
    shapes: list[FleetShape],
    refreshes: tuple[float, ...] = DEFAULT_REFRESHES,
    *,
    step_seconds: float = 20.0,
    limit: float = 1.0,
    max_viewers: int = 256,
    dashboard: Path = grafana_files.DASHBOARD_FILE,
    output_dir: Path = OUTPUT_DIR,
) -> list[FleetCapacity]:
    """Every fleet in turn; prints every step and the table, saves both under output_dir."""
    output_dir.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def log(line: str) -> None:
        log_lines.append(line)
        print(line, flush=True)

    with project.database.connect() as conn:
        server = conn.execute("select version()").fetchone()[0]  # type: ignore[index]
    log(f"machine: {machine()}; server: {server.split(' on ')[0]}; dashboard: {dashboard}")
    results = [
        measure_fleet(
            project,
            shape,
            refreshes,
            step_seconds=step_seconds,
            limit=limit,
            max_viewers=max_viewers,
            dashboard=dashboard,
            log=log,
        )
        for shape in shapes
    ]
    log("\n" + format_table(results, limit))
    (output_dir / "results.md").write_text("\n".join(log_lines) + "\n")
    return results


def load_command(project: DbtProject, args: Any) -> int:
    """`buildqueue load`: parse, refuse production targets, search, print; 2 on bad input."""
    if refuses_production_target(args.target):
        return 2
    try:
        shapes = [parse_shape(size, args.seed) for size in args.sizes or DEFAULT_FLEETS]
        if min(args.refresh) <= 0 or args.step_seconds <= 0 or args.max_viewers < 1:
            raise ValueError("--refresh and --step-seconds must be positive, --max-viewers >= 1")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    project.schema = LOAD_VIEW_SCHEMA
    try:
        run_capacity(
            project,
            shapes,
            tuple(args.refresh),
            step_seconds=args.step_seconds,
            limit=args.p99,
            max_viewers=args.max_viewers,
            dashboard=args.dashboard or grafana_files.DASHBOARD_FILE,
        )
    except (LoadError, grafana_files.GrafanaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
