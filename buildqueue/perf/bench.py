"""`./run bench`: every query shape of the corpus against ``select *``, on synthetic fleets.

For each fleet (`buildqueue.perf.fleet`, loaded in Crystal Forge's shape with its own
indexes), build the view and the queue history over it, fill a month of samples, then time
every shape of `buildqueue.perf.corpus` twice: on Crystal Forge's indexes alone and with
the index step (`buildqueue.perf.catalog.INDEX_STEP`). The table goes to
``.buildqueue/bench/results.md``, ``select *``'s plans next to it. Per shape: ``explain (analyze)``
first (the warm-up, and whether parallel workers ran), then the median of ``runs`` runs,
all shapes interleaved so the machine's load falls on every shape alike. It prints
numbers and never fails on timing.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from buildqueue.database import Database
from buildqueue.dbt import DbtProject, project_vars
from buildqueue.paths import SCRATCH_DIR
from buildqueue.perf.catalog import set_index_step
from buildqueue.perf.corpus import corpus
from buildqueue.perf.fleet import FleetShape
from buildqueue.perf.loader import load_fleet
from buildqueue.perf.plans import explain, is_parallel

DEFAULT_SIZES = ("1000x1000", "3000x1000")
SOURCE_SCHEMA, VIEW_SCHEMA = "fleet_bench", "fleet_bench_view"
OUTPUT = SCRATCH_DIR / "bench" / "results.md"
HISTORY = timedelta(days=30)
"""Queue history filled before timing: a month, the default retention."""

Timings = dict[str, tuple[float, bool]]
"""Shape -> (median seconds, whether parallel workers ran)."""


def parse_shape(text: str, seed: int = 1) -> FleetShape:
    """``SxP`` or ``SxP+hH`` (H finished evaluations per queued system), e.g. 1000x1000+h10."""
    try:
        size, _, history = text.lower().partition("+h")
        systems, packages = (int(part) for part in size.split("x"))
        return FleetShape(systems, packages, history=int(history or 0), seed=seed)
    except ValueError as error:
        raise ValueError(
            f"bad fleet size {text!r}: expected SYSTEMSxPACKAGES[+hHISTORY], e.g. 1000x1000"
        ) from error


def fill_history(conn: psycopg.Connection, schema: str, every: str, span: timedelta) -> int:
    """Copy the newest sample back in time, one per ``every``, over ``span``; rows added."""
    table = sql.Identifier(schema, "build_queue_samples")
    columns = [
        row[0]
        for row in conn.execute(
            "select column_name from information_schema.columns where table_schema = %s"
            " and table_name = 'build_queue_samples' order by ordinal_position",
            [schema],
        )
    ]
    shifted = {
        "sampled_at": sql.SQL("sampled_at - g * {}::interval").format(every),
        "measured_at": sql.SQL("measured_at - g * {}::interval").format(every),
        "packages_pending": sql.SQL("packages_pending + g % 97"),
    }
    count = conn.execute(
        sql.SQL(
            "insert into {t} ({cols}) select {values} from (select * from {t}"
            " order by sampled_at desc limit 1) as newest"
            " cross join generate_series(1, (extract(epoch from {span}::interval)"
            " / extract(epoch from {every}::interval))::int - 1) as g on conflict do nothing"
        ).format(
            t=table,
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(shifted.get(c, sql.Identifier(c)) for c in columns),
            span=f"{int(span.total_seconds())} seconds",
            every=every,
        )
    ).rowcount
    conn.execute(sql.SQL("analyze {}").format(table))
    return count


def time_shapes(conn: psycopg.Connection, shapes: dict[str, str], runs: int) -> Timings:
    """Each shape's median of ``runs`` (interleaved) and whether it ran in parallel."""
    parallel = {name: is_parallel(explain(conn, query)) for name, query in shapes.items()}
    seconds: dict[str, list[float]] = {name: [] for name in shapes}
    for _ in range(runs):
        for name, query in shapes.items():
            started = time.perf_counter()
            conn.execute(query).fetchall()  # type: ignore[arg-type]
            seconds[name].append(time.perf_counter() - started)
    return {name: (statistics.median(seconds[name]), parallel[name]) for name in shapes}


def prepare_fleet(
    database: Database, conn: psycopg.Connection, target: str, shape: FleetShape
) -> tuple[DbtProject, int]:
    """Load the fleet, build the view and a month of its history; (project, dependency rows).

    Leaves ``conn``'s search_path on the view's schema."""
    project = DbtProject(
        database, target=target, schema=VIEW_SCHEMA, vars={"source_schema": SOURCE_SCHEMA}
    )
    conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(VIEW_SCHEMA)))
    print(f"[{shape.label}] generating and loading ...", file=sys.stderr)
    rows = load_fleet(project, conn, SOURCE_SCHEMA, shape)
    project.invoke("run", "--select", "view_build_queue_status build_queue_samples")
    fill_history(conn, VIEW_SCHEMA, str(project.settings()["queue_sample_interval"]), HISTORY)
    conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(VIEW_SCHEMA)))
    return project, rows["derivation_dependencies"]


def bench_fleet(
    database: Database, target: str, shape: FleetShape, runs: int
) -> tuple[int, dict[str, Timings]]:
    """Load one fleet and time the corpus without and with the index step."""
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with database.connect() as conn:
        project, dependency_rows = prepare_fleet(database, conn, target, shape)
        shapes = corpus(project, conn)
        results = {}
        for step in (False, True):
            set_index_step(conn, SOURCE_SCHEMA, on=step)
            print(
                f"[{shape.label}] timing {len(shapes)} shapes, index step {step}", file=sys.stderr
            )
            results["with index step" if step else "Crystal Forge's indexes"] = time_shapes(
                conn, shapes, runs
            )
            plan = conn.execute("explain (analyze, buffers) select * from view_build_queue_status")
            name = f"{shape.label}{'-index-step' if step else ''}.plan.txt"
            (OUTPUT.parent / name).write_text("\n".join(row[0] for row in plan) + "\n")
    return dependency_rows, results


def format_table(label: str, dependency_rows: int, results: dict[str, Timings]) -> str:
    """One fleet's Markdown table: per shape, time, ratio to select * and parallel, per step."""
    steps = list(results)
    head = "| shape | " + " | ".join(f"{s}: time | ratio | parallel" for s in steps) + " |"
    lines = [
        f"### {label} ({dependency_rows:,} dependency rows)",
        "",
        head,
        "| --- |" + " ---: | ---: | --- |" * len(steps),
    ]
    for name in results[steps[0]]:
        cells = []
        for step in steps:
            seconds, parallel = results[step][name]
            ratio = seconds / results[step]["select *"][0]
            flag = f"**{ratio:.2f}x**" if ratio > 2 else f"{ratio:.2f}x"
            cells.append(f"{seconds * 1000:.1f} ms | {flag} | {'yes' if parallel else 'no'}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_sizes(args: Any) -> list[FleetShape] | None:
    """The fleets to load, or None after saying on stderr why not (production, bad size)."""
    if args.target in project_vars()["production_targets"]:
        print(
            f"error: refusing to load synthetic fleets into target '{args.target}' (a "
            "production target). Fix: use --target dev or ci.",
            file=sys.stderr,
        )
        return None
    try:
        return [parse_shape(size, args.seed) for size in args.sizes or DEFAULT_SIZES]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def bench_command(database: Database, args: Any) -> int:
    """`buildqueue bench [SIZES...] [--runs N] [--seed N]`: 2 on a bad size or target."""
    shapes = parse_sizes(args)
    if shapes is None:
        return 2
    tables, select_star = [], []
    for shape in shapes:
        dependency_rows, results = bench_fleet(database, args.target, shape, args.runs)
        tables.append(format_table(shape.label, dependency_rows, results))
        select_star.append((shape.label, dependency_rows, results))
        print(tables[-1] + "\n")
    for (a, rows_a, res_a), (b, rows_b, res_b) in itertools.pairwise(select_star):
        for step in res_a:
            time_ratio = res_b[step]["select *"][0] / res_a[step]["select *"][0]
            tables.append(
                f"scale {a} -> {b} ({step}): select * {time_ratio:.2f}x for "
                f"{rows_b / rows_a:.2f}x the dependency rows"
            )
            print(tables[-1])
    OUTPUT.write_text("\n\n".join(tables) + "\n")
    return 0
