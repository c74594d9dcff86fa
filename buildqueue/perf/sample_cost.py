"""What one queue sample costs on a synthetic fleet (default 1000 systems x 1000 packages).

    .venv/bin/python -m buildqueue.perf.sample_cost [SIZE] [--runs N] [--database ...]

Loads the fleet (`buildqueue.perf.fleet`) into a scratch source schema, builds the view and
the samples table over it in a scratch schema, then times, each the median of ``runs``:

* the view alone (`select *`, what one dashboard query costs), and the sample's query
  alone: the model's compiled select (the view read and summed once), what the database
  spends per sample;
* `dbt run --select build_queue_samples` in this process, adding a sample (the
  bucket's sample is deleted before each, untimed) and finding its bucket sampled;
* the same dbt command as a cron job runs it: a fresh process (Python start, dbt import,
  project parse, run), the wall-clock cost of one scheduled sample, and the CPU time
  that process used (less sensitive than wall-clock time to other load on the machine).

It prints the numbers with the load average next to them and drops both scratch schemas.
Nothing is asserted: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from buildqueue.database import Database, open_database
from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.perf.benchmark import machine, parse_shape
from buildqueue.perf.loader import load_fleet
from buildqueue.sampler import SAMPLE_MODEL

COMPILED_MODEL = (
    PROJECT_DIR / "target/compiled/buildqueue/models/marts/monitoring" / f"{SAMPLE_MODEL}.sql"
)


def _median(run: Callable[[], None], runs: int) -> float:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _median_of(run: Callable[[], float], runs: int) -> float:
    return statistics.median(run() for _ in range(runs))


def _dbt_command(project: DbtProject, vars_text: str) -> list[str]:
    """The exact command a cron job runs (profiles and target made explicit)."""
    dbt = Path(sys.executable).with_name("dbt")
    return [
        str(dbt),
        "run",
        "--select",
        SAMPLE_MODEL,
        "--target",
        project.target,
        "--profiles-dir",
        str(project.profiles_dir),
        "--project-dir",
        str(PROJECT_DIR),
        "--vars",
        vars_text,
    ]


def measure(database: Database, size: str, runs: int) -> list[str]:
    """Load, build, time; return the report's lines. Scratch schemas are always dropped."""
    suffix = uuid.uuid4().hex[:8]
    source_schema, view_schema = f"sample_cost_{suffix}", f"sample_cost_{suffix}_view"
    project = DbtProject(database, target="dev", schema=view_schema)
    # one bucket for the whole measurement; "adding a sample" first deletes the bucket's
    vars_ = {"source_schema": source_schema, "queue_sample_interval": "1 day"}
    vars_text = "{" + ", ".join(f"{key}: {value}" for key, value in vars_.items()) + "}"
    lines = [f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at start"]
    with database.connect() as conn:
        try:
            shape = parse_shape(size)
            stats = load_fleet(project, conn, source_schema, shape)
            lines.append(f"fleet {shape.label}: {stats.describe()}")
            project.invoke("run", "--select", "view_build_queue_status", SAMPLE_MODEL, vars=vars_)
            # compiled by the run that created the table: the select without the
            # "bucket already sampled" shortcut, i.e. the full work of a sample
            query = COMPILED_MODEL.read_text()

            table = sql.Identifier(view_schema, SAMPLE_MODEL)
            forget = sql.SQL("delete from {} where sampled_at = (select max(sampled_at) from {})")

            def sample_query() -> None:
                conn.execute(query).fetchall()

            def view_query() -> None:
                conn.execute(
                    sql.SQL("select * from {}").format(
                        sql.Identifier(view_schema, "view_build_queue_status")
                    )
                ).fetchall()

            def timed_after_forgetting(run: Callable[[], None]) -> Callable[[], float]:
                def once() -> float:
                    conn.execute(forget.format(table, table))  # the bucket is free again
                    started = time.perf_counter()
                    run()
                    return time.perf_counter() - started

                return once

            def dbt_run() -> None:
                project.invoke("run", "--select", SAMPLE_MODEL, vars=vars_)

            cpu_seconds: list[float] = []

            def cron_job() -> None:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(
                    _dbt_command(project, vars_text),
                    cwd=PROJECT_DIR,
                    capture_output=True,
                    check=True,
                )
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu_seconds.append(
                    after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                )

            sample_query()  # warm-up
            cron_job()  # warm-up: dbt's partial parse file for these vars
            view_query()  # warm-up
            seconds = {
                "the view alone (select *, every row fetched)": _median(view_query, runs),
                "sample query alone (the view read and summed once)": _median(sample_query, runs),
                "dbt run, in-process, adding a sample": _median_of(
                    timed_after_forgetting(dbt_run), runs
                ),
                "dbt run, in-process, bucket already sampled": _median(dbt_run, runs),
                "dbt run as a cron job runs it (new process), adding a sample": _median_of(
                    timed_after_forgetting(cron_job), runs
                ),
            }
            (count,) = conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(view_schema, SAMPLE_MODEL))
            ).fetchone()
            seconds["CPU time of that dbt process (user + system)"] = statistics.median(
                cpu_seconds[1:]  # without the warm-up
            )
            lines += [f"  {name}: {value * 1000:8.0f} ms" for name, value in seconds.items()]
            lines.append(
                f"median of {runs} runs; {count} samples taken; "
                f"load average {os.getloadavg()[0]:.1f} at the end (a shared machine: "
                "the dbt numbers include waiting for the CPU)"
            )
        finally:
            for schema in (view_schema, source_schema):
                conn.execute(
                    sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema))
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m buildqueue.perf.sample_cost", description=__doc__
    )
    parser.add_argument("size", nargs="?", default="1000x1000", help="SYSTEMSxPACKAGES")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (median)")
    parser.add_argument("--database", help="embedded (default), env, testcontainers or a DSN")
    args = parser.parse_args(argv)
    database = open_database(args.database)
    try:
        for line in measure(database, args.size, args.runs):
            print(line)
    finally:
        database.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
