"""Benchmark view_build_queue_status on synthetic fleets against a one-query baseline.

For each fleet shape (`buildqueue.perf.fleet`): load it into a scratch schema, build the view
over it with dbt (``--vars '{source_schema: <scratch>}'``, into its own schema), then

* check that the view and the baseline return the same rows, both run in one
  repeatable-read transaction (``now()`` frozen, one snapshot);
* time ``select * from view_build_queue_status`` (all rows fetched) and the baseline: a
  warm-up each, then the median of ``runs`` runs, alternating the two;
* save ``explain (analyze, buffers)`` of both under ``.buildqueue/bench/<shape>/``.

It prints numbers and never fails on timing; only wrong rows make it fail.
The baseline is the straightforward formulation: systems joined to their packages and to
their reservations in one query, then ``count(distinct ...)``, which fans out to
packages x reservations rows per system.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from buildqueue.database import Database
from buildqueue.dbt import DbtProject, project_vars
from buildqueue.paths import SCRATCH_DIR
from buildqueue.perf.catalog import describe_indexes
from buildqueue.perf.fleet import FleetShape, status_ids
from buildqueue.perf.loader import load_fleet
from buildqueue.perf.plans import (
    deduplicates_dependencies,
    dependency_join_estimate,
    explain,
    nodes,
)
from buildqueue.report import VIEW_COLUMNS, view_query

DEFAULT_SHAPES = (
    FleetShape(100, 100),
    FleetShape(1000, 200),
    FleetShape(1000, 1000),
    FleetShape(3000, 1000),
    FleetShape(1000, 1000, history=10),
)
"""The issue's sizes: (systems, packages each), plus 1000 x 1000 with 10x finished history."""

SOURCE_SCHEMA = "fleet_bench"
VIEW_SCHEMA = "fleet_bench_view"
OUTPUT_DIR = SCRATCH_DIR / "bench"


class ResultMismatch(Exception):
    """The view and the baseline disagree: speed must never buy wrong answers."""


@dataclass
class CaseResult:
    """What one fleet shape measured."""

    shape: str
    systems_in_view: int
    dependency_rows: int
    load_seconds: float
    view_seconds: list[float] = field(default_factory=list)
    baseline_seconds: list[float] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    plan: str = ""
    """The view's plan in a few words: workers, de-duplication, the join's estimate."""

    @property
    def view_median(self) -> float:
        return statistics.median(self.view_seconds)

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline_seconds) if self.baseline_seconds else None

    @property
    def ratio(self) -> float | None:
        baseline = self.baseline_median
        return None if baseline is None else baseline / self.view_median


def baseline_query(schema: str, settings: Mapping[str, Any] | None = None) -> sql.Composed:
    """The straightforward single query, with the view's semantics and columns.

    Status ids: the statuses the vars name (``settings``, default the project's vars as dbt
    reads them), in the fleets' status catalogue.
    """
    v = project_vars() if settings is None else settings
    ids = status_ids()
    queued = sql.SQL(", ").join(
        sql.Literal(ids[name]) for name in v["queued_system_statuses"] if name in ids
    )
    completed = sql.SQL("{}, {}").format(
        sql.Literal(ids[v["build_complete_status"]]),
        sql.Literal(ids[v["cache_pushed_status"]]),
    )
    return sql.SQL(
        """
        select
            systems.id as nixos_id,
            systems.derivation_name as system_name,
            commits.commit_timestamp,
            commits.git_commit_hash,
            count(distinct packages.id) as total_packages,
            count(distinct packages.id) filter (where packages.status_id in ({completed}))
                as completed_packages,
            count(distinct packages.id) filter (where packages.status_id = {building})
                as building_packages,
            count(distinct packages.id)
                - count(distinct packages.id) filter (where packages.status_id in ({completed}))
                - count(distinct packages.id) filter (where packages.status_id = {building})
                as pending_packages,
            count(distinct packages.id) filter (where packages.status_id = {cached})
                as cached_packages,
            count(distinct reservations.worker_id) as active_workers,
            coalesce(
                array_agg(distinct reservations.worker_id collate "C"
                    order by reservations.worker_id collate "C")
                    filter (where reservations.worker_id is not null),
                '{{}}'
            )::text [] as worker_ids,
            min(reservations.reserved_at) as earliest_reservation,
            max(reservations.heartbeat_at) as latest_heartbeat,
            case
                when count(distinct packages.id)
                    = count(distinct packages.id) filter (where packages.status_id in ({completed}))
                    then 'ready_for_system_build'
                when count(distinct reservations.worker_id) > 0 then 'building'
                else 'pending'
            end as status,
            case
                when count(distinct packages.id)
                    = count(distinct packages.id) filter (where packages.status_id in ({completed}))
                    and count(distinct packages.id) filter (where packages.status_id = {cached})
                    < count(distinct packages.id)
                    then 'waiting_for_cache_push'
            end as cache_status,
            coalesce(bool_or(reservations.heartbeat_at < now() - {threshold}::interval), false)
                as has_stale_workers
        from {derivations} as systems
        left join {commits} as commits on systems.commit_id = commits.id
        left join {dependencies} as dependencies on systems.id = dependencies.derivation_id
        left join {derivations} as packages
            on dependencies.depends_on_id = packages.id and packages.derivation_type = 'package'
        left join {reservations} as reservations
            on reservations.nixos_derivation_id = systems.id
            or reservations.derivation_id = systems.id
        where systems.derivation_type = 'nixos' and systems.status_id in ({queued})
        group by systems.id, systems.derivation_name, commits.commit_timestamp,
            commits.git_commit_hash
        order by commits.commit_timestamp desc nulls last, systems.derivation_name, systems.id
        """
    ).format(
        completed=completed,
        building=sql.Literal(ids[v["build_in_progress_status"]]),
        cached=sql.Literal(ids[v["cache_pushed_status"]]),
        threshold=sql.Literal(str(v["stale_heartbeat_threshold"])),
        queued=queued,
        derivations=sql.Identifier(schema, "derivations"),
        commits=sql.Identifier(schema, "commits"),
        dependencies=sql.Identifier(schema, "derivation_dependencies"),
        reservations=sql.Identifier(schema, "build_reservations"),
    )


def _timed(conn: psycopg.Connection, query: sql.Composable) -> tuple[float, list[tuple]]:
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(query)
        rows = cur.fetchall()
    return time.perf_counter() - started, rows


def _explain(conn: psycopg.Connection, query: sql.Composable) -> str:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("explain (analyze, buffers) ") + query)
        return "\n".join(row[0] for row in cur.fetchall())


def describe_plan(conn: psycopg.Connection, query: sql.Composable) -> str:
    """What the view's plan decided, in the terms of docs/performance.md."""
    plan = explain(conn, query, analyze=True)
    workers = sum(node.get("Workers Launched", 0) for node in nodes(plan))
    estimate = dependency_join_estimate(plan)
    return (
        (f"parallel, {workers} workers" if workers else "serial")
        + (", de-duplicates" if deduplicates_dependencies(plan) else "")
        + f", join estimate {estimate.ratio:.2f}x actual"
    )


def compare(view_rows: list[tuple], baseline_rows: list[tuple]) -> None:
    """Raise `ResultMismatch` naming the first differing system, if any."""
    if view_rows == baseline_rows:
        return
    by_id = {row[0]: row for row in baseline_rows}
    for row in view_rows:
        other = by_id.pop(row[0], None)
        if other != row:
            diff = {
                column: (mine, theirs)
                for column, mine, theirs in zip(
                    VIEW_COLUMNS, row, other or (None,) * 16, strict=True
                )
                if mine != theirs
            }
            raise ResultMismatch(f"system {row[0]}: view vs baseline differ on {diff}")
    if by_id:
        raise ResultMismatch(f"baseline has systems the view lacks: {sorted(by_id)[:10]}")
    raise ResultMismatch("same rows in a different order")


def check_same_rows(
    conn: psycopg.Connection,
    view_schema: str,
    source_schema: str,
    settings: Mapping[str, Any] | None = None,
) -> int:
    """Both formulations in one repeatable-read transaction; the number of rows.

    ``settings``: the vars the view was built with (default the project's)."""
    conn.autocommit = False
    try:
        conn.execute("set transaction isolation level repeatable read")
        _, view_rows = _timed(conn, view_query(view_schema))
        _, baseline_rows = _timed(conn, baseline_query(source_schema, settings))
        conn.rollback()
    finally:
        conn.autocommit = True
    compare(view_rows, baseline_rows)
    return len(view_rows)


def run_case(
    project: DbtProject,
    conn: psycopg.Connection,
    shape: FleetShape,
    *,
    runs: int = 5,
    baseline: bool = True,
    output_dir: Path = OUTPUT_DIR,
    log: Any = print,
) -> CaseResult:
    """Load one fleet, build the view over it, check, time and explain both queries."""
    log(f"[{shape.label}] generating and loading ...")
    stats = load_fleet(project, conn, SOURCE_SCHEMA, shape)
    log(f"[{shape.label}] {stats.describe()}")
    vars = {"source_schema": SOURCE_SCHEMA}
    project.invoke("run", "--select", "view_build_queue_status", vars=vars)
    settings = project.settings(vars)
    view_schema = project.schema or VIEW_SCHEMA
    result = CaseResult(
        shape=shape.label,
        systems_in_view=0,
        dependency_rows=stats.rows["derivation_dependencies"],
        load_seconds=stats.total_seconds,
        indexes=describe_indexes(conn, SOURCE_SCHEMA),
    )
    view, reference = view_query(view_schema), baseline_query(SOURCE_SCHEMA, settings)
    if baseline:
        result.systems_in_view = check_same_rows(conn, view_schema, SOURCE_SCHEMA, settings)
        log(f"[{shape.label}] view and baseline agree on {result.systems_in_view} rows")
    folder = output_dir / shape.label
    folder.mkdir(parents=True, exist_ok=True)
    _timed(conn, view)  # warm-up
    (folder / "view.plan.txt").write_text(_explain(conn, view) + "\n")
    result.plan = describe_plan(conn, view)
    if baseline:
        # the baseline's explain analyze runs it in full: it is the baseline's warm-up
        (folder / "baseline.plan.txt").write_text(_explain(conn, reference) + "\n")
    for _ in range(runs):
        seconds, rows = _timed(conn, view)
        result.view_seconds.append(seconds)
        result.systems_in_view = len(rows)
        if baseline:
            result.baseline_seconds.append(_timed(conn, reference)[0])
    (folder / "result.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    log(f"[{shape.label}] {format_row(result)} | {result.plan}")
    return result


def format_row(result: CaseResult) -> str:
    baseline = result.baseline_median
    return (
        f"view {result.view_median * 1000:9.1f} ms | baseline "
        + ("        - " if baseline is None else f"{baseline * 1000:9.1f} ms")
        + " | ratio "
        + ("    -" if result.ratio is None else f"{result.ratio:6.1f}x")
    )


def format_table(results: list[CaseResult]) -> str:
    """The results as a Markdown table (what docs/performance.md shows)."""
    lines = [
        "| fleet (systems x packages) | dependency rows | systems in view | view median | "
        "baseline median | baseline / view | view's plan |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        baseline = r.baseline_median
        lines.append(
            f"| {r.shape} | {r.dependency_rows:,} | {r.systems_in_view:,} | "
            f"{r.view_median * 1000:.1f} ms | "
            + ("-" if baseline is None else f"{baseline * 1000:.0f} ms")
            + " | "
            + ("-" if r.ratio is None else f"{r.ratio:.1f}x")
            + f" | {r.plan} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """A one-line description of where the numbers come from."""
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def run_benchmark(
    database: Database,
    shapes: tuple[FleetShape, ...] = DEFAULT_SHAPES,
    *,
    runs: int = 5,
    baseline: bool = True,
    target: str = "dev",
    output_dir: Path = OUTPUT_DIR,
) -> list[CaseResult]:
    """Every shape in turn; prints progress and the final table, returns the results."""
    project = DbtProject(database, target=target, schema=VIEW_SCHEMA)
    results = []
    with database.connect() as conn:
        server = conn.execute("select version()").fetchone()[0]
        work_mem = conn.execute("show work_mem").fetchone()[0]
        for shape in shapes:
            results.append(
                run_case(project, conn, shape, runs=runs, baseline=baseline, output_dir=output_dir)
            )
    table = format_table(results)
    header = (
        f"machine: {machine()}\nserver: {server.split(' on ')[0]}, work_mem {work_mem}\n"
        f"median of {runs} runs after a warm-up; plans in {output_dir}\n"
        f"indexes present:\n" + "\n".join(f"  {line}" for line in results[-1].indexes)
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.md").write_text(header + "\n\n" + table + "\n")
    print("\n" + header + "\n\n" + table)
    return results


def refuses_production_target(target: str) -> bool:
    """Synthetic fleets never go to a production target: say so on stderr and return True."""
    if target not in project_vars()["production_targets"]:
        return False
    print(
        f"error: refusing to load synthetic fleets with target '{target}' "
        "(a production target): use --target dev or ci.",
        file=sys.stderr,
    )
    return True


def bench_command(database: Database, args: Any) -> int:
    """`buildqueue bench`: parse the sizes, run, print; 2 on a bad size, 1 on wrong rows."""
    if refuses_production_target(args.target):
        return 2
    if args.history_curve:
        if not all(size.isdigit() and int(size) > 0 for size in args.sizes):
            print(
                f"error: --history-curve takes queue sizes (e.g. 250 500), not {args.sizes}",
                file=sys.stderr,
            )
            return 2
        try:
            run_history_curve(
                database,
                tuple(int(size) for size in args.sizes) or CURVE_QUEUE_SIZES,
                runs=args.runs,
                seed=args.seed,
                target=args.target,
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except ResultMismatch as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    sizes = args.sizes or [shape.label for shape in DEFAULT_SHAPES]
    try:
        shapes = tuple(parse_shape(size, args.seed) for size in sizes)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        run_benchmark(
            database, shapes, runs=args.runs, baseline=not args.no_baseline, target=args.target
        )
    except ResultMismatch as error:
        print(f"error: the view and the baseline disagree: {error}", file=sys.stderr)
        return 1
    return 0


def parse_shape(text: str, seed: int = 1) -> FleetShape:
    """``SxP`` or ``SxP+hH`` (H finished evaluations per queued system), e.g. 1000x1000+h10."""
    try:
        size, _, history = text.lower().partition("+h")
        systems, packages = (int(part) for part in size.split("x"))
        return FleetShape(systems, packages, history=int(history or 0), seed=seed)
    except ValueError as error:
        raise ValueError(
            f"bad fleet size {text!r}: expected SYSTEMSxPACKAGES, optionally +hHISTORY "
            "(e.g. 1000x1000 or 1000x1000+h10)"
        ) from error


# --- the history curve (issue 11, point 4) ------------------------------------------------

CURVE_QUEUE_SIZES = (250, 500, 750, 1000, 1250, 1500, 1750, 2000)
CURVE_PACKAGES = 1000
CURVE_HISTORY = 10
CURVE_LIMIT = 1.5
"""With history the view's median must stay within this factor of the no-history one."""
UNQUEUED_STATUS = "dry-run-failed"
"""Where the curve parks the queued systems it takes out of the queue: neither queued nor
finished, so the history does not grow as the queue shrinks."""


@dataclass
class CurvePoint:
    """The view at one queue size on one fleet."""

    queued: int
    seconds: list[float]
    plan: str

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def set_queue_size(
    conn: psycopg.Connection, schema: str, queued: list[tuple[int, int]], size: int
) -> None:
    """Keep the first ``size`` of ``queued`` (id, status) in the queue, park the rest.

    Then ``vacuum (analyze)`` the table, as autovacuum does on a live database after
    changes: statistics current, visibility map set.
    """
    ids = status_ids()
    keep, park = queued[:size], queued[size:]
    table = sql.Identifier(schema, "derivations")
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "update {} as d set status_id = v.status from unnest(%s::int[], %s::int[]) "
                "as v(id, status) where d.id = v.id and d.status_id is distinct from v.status"
            ).format(table),
            [
                [i for i, _ in keep] + [i for i, _ in park],
                [s for _, s in keep] + [ids[UNQUEUED_STATUS]] * len(park),
            ],
        )
    conn.execute(sql.SQL("vacuum (analyze) {}").format(table))


def all_visible(conn: psycopg.Connection, schema: str) -> str:
    """Share of heap pages marked all-visible per big table (what index-only scans need)."""
    rows = conn.execute(
        """
        select relname, relallvisible::float / greatest(relpages, 1)
        from pg_class
        where relnamespace = to_regnamespace(%s)
            and relname in ('derivations', 'derivation_dependencies')
        order by relname
        """,
        [schema],
    ).fetchall()
    return ", ".join(f"{name} {share:.0%}" for name, share in rows)


HISTORY_SOURCE_SCHEMA = "fleet_bench_history"
HISTORY_VIEW_SCHEMA = "fleet_bench_history_view"


@dataclass
class CurveFleet:
    """One fleet of the curve: where it is loaded, its view, its queued systems."""

    shape: FleetShape
    source_schema: str
    view_schema: str
    queued: list[tuple[int, int]] = field(default_factory=list)
    """(id, status) of every queued system, in the order the queue keeps them."""
    points: list[CurvePoint] = field(default_factory=list)


def load_curve_fleet(
    database: Database, conn: psycopg.Connection, fleet: CurveFleet, target: str, log: Any
) -> None:
    """Load the fleet into its own schema, build the view over it, list its queue."""
    project = DbtProject(database, target=target, schema=fleet.view_schema)
    log(f"[{fleet.shape.label}] generating and loading ...")
    stats = load_fleet(project, conn, fleet.source_schema, fleet.shape)
    log(f"[{fleet.shape.label}] {stats.describe()}")
    vars = {"source_schema": fleet.source_schema}
    project.invoke("run", "--select", "view_build_queue_status", vars=vars)
    fleet.queued = queued_systems(conn, fleet.source_schema, project.settings(vars))


def queued_systems(
    conn: psycopg.Connection, schema: str, settings: Mapping[str, Any] | None = None
) -> list[tuple[int, int]]:
    """(id, status) of the queued systems, in a fixed pseudo-random order (id hash).

    Queued: the statuses ``settings`` (default the project's vars) name."""
    ids = status_ids()
    queued = (project_vars() if settings is None else settings)["queued_system_statuses"]
    rows = conn.execute(
        sql.SQL(
            "select id, status_id from {} where derivation_type = 'nixos' "
            "and status_id = any(%s) order by hashint4(id), id"
        ).format(sql.Identifier(schema, "derivations")),
        [[ids[name] for name in queued if name in ids]],
    ).fetchall()
    return [(int(i), int(s)) for i, s in rows]


def time_curve_point(
    conn: psycopg.Connection, fleets: list[CurveFleet], size: int, runs: int, log: Any
) -> None:
    """Set every fleet's queue to ``size``, then time the views alternately.

    Alternating puts the fleets under the same load from other tenants of the machine,
    so the ratio means something even when the absolute times do not.
    """
    views = []
    for fleet in fleets:
        if size > len(fleet.queued):
            raise ValueError(f"queue size {size} exceeds the fleet's {len(fleet.queued)} systems")
        set_queue_size(conn, fleet.source_schema, fleet.queued, size)
        views.append(view_query(fleet.view_schema))
        _timed(conn, views[-1])  # warm-up
    seconds: list[list[float]] = [[] for _ in fleets]
    for _ in range(runs):
        for index, view in enumerate(views):
            elapsed, result = _timed(conn, view)
            seconds[index].append(elapsed)
            if len(result) != size:
                raise ResultMismatch(f"{len(result)} rows in the view, {size} queued")
    for fleet, view, times in zip(fleets, views, seconds, strict=True):
        point = CurvePoint(size, times, describe_plan(conn, view))
        fleet.points.append(point)
        log(
            f"[{fleet.shape.label}] queue {size:5}: view {point.median * 1000:7.1f} ms | "
            f"{point.plan} | all-visible: {all_visible(conn, fleet.source_schema)}"
        )


def format_curve(
    without: list[CurvePoint], with_history: list[CurvePoint], history: int, largest: int
) -> str:
    """The curve as a Markdown table: both medians, the ratio, both plans."""
    lines = [
        f"| queued systems | no history | {history}x history ({history * largest:,} finished "
        "systems) | ratio | within "
        f"{CURVE_LIMIT}x | plan without history | plan with history |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for plain, history_point in zip(without, with_history, strict=True):
        ratio = history_point.median / plain.median
        lines.append(
            f"| {plain.queued:,} | {plain.median * 1000:.0f} ms | "
            f"{history_point.median * 1000:.0f} ms | {ratio:.2f}x | "
            f"{'yes' if ratio <= CURVE_LIMIT else '**no**'} | {plain.plan} | "
            f"{history_point.plan} |"
        )
    return "\n".join(lines)


def run_history_curve(
    database: Database,
    sizes: tuple[int, ...] = CURVE_QUEUE_SIZES,
    *,
    packages: int = CURVE_PACKAGES,
    history: int = CURVE_HISTORY,
    runs: int = 5,
    seed: int = 1,
    target: str = "dev",
    output_dir: Path = OUTPUT_DIR,
    log: Any = print,
) -> str:
    """The view's median per queue size without and with history; prints the table.

    Two fleets of ``max(sizes)`` queued systems x ``packages``, one without history and
    one with ``history`` finished evaluations per queued host, each in its own schema
    and loaded once; the queue is shrunk step by step (`set_queue_size`), so the history
    stays the same (``history`` x the largest queue) at every size.
    """
    largest = max(sizes)
    fleets = [
        CurveFleet(FleetShape(largest, packages, seed=seed), SOURCE_SCHEMA, VIEW_SCHEMA),
        CurveFleet(
            FleetShape(largest, packages, history=history, seed=seed),
            HISTORY_SOURCE_SCHEMA,
            HISTORY_VIEW_SCHEMA,
        ),
    ]
    with database.connect() as conn:
        server = conn.execute("select version()").fetchone()[0]
        for fleet in fleets:
            load_curve_fleet(database, conn, fleet, target, log)
        for size in sorted(sizes, reverse=True):
            time_curve_point(conn, fleets, size, runs, log)
    without, with_history = (sorted(f.points, key=lambda p: p.queued) for f in fleets)
    table = format_curve(without, with_history, history, largest)
    header = (
        f"machine: {machine()}\nserver: {server.split(' on ')[0]}\n"
        f"median of {runs} runs after a warm-up, the two fleets alternating, {packages} "
        f"packages per system; the queue shrunk from {largest} by parking systems as "
        f"{UNQUEUED_STATUS}, then vacuum (analyze)"
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "history-curve.md").write_text(header + "\n\n" + table + "\n")
    print("\n" + header + "\n\n" + table)
    return table
