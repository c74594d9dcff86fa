"""Take a queue sample: `dbt run --select build_queue_samples` (one row per bucket of var
queue_sample_interval). In production cron or a systemd timer runs that dbt command
(docs/operations.md); `buildqueue sample --every N` loops it for a quick look."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.dbt import DbtConnectionError, DbtError, DbtOutcome, DbtProject, lost_connection

SAMPLE_MODEL = "build_queue_samples"
VIEW = "view_build_queue_status"


class SampleError(Exception):
    """A sample cannot be taken; the message says why and what to do."""


@dataclass(frozen=True)
class Sample:
    """What one sample run did: the row it added, or the bucket's existing row."""

    row: dict[str, Any]
    added: bool
    seconds: float

    def describe(self) -> str:
        """One line: the sample's time, its counts, and whether this run added it."""
        row = self.row
        when = _clock(row["sampled_at"])
        counts = (
            f"{row['systems_queued']} systems queued ({row['systems_building']} building, "
            f"{row['systems_ready']} ready, {row['systems_with_stale_workers']} with stale "
            f"workers); packages {row['packages_pending']} pending, "
            f"{row['packages_building']} building, {row['packages_completed']} completed, "
            f"{row['packages_cached']} cached; {row['active_workers']} active workers"
        )
        if self.added:
            return f"sample {when}: {counts} ({self.seconds:.1f} s)"
        return (
            f"sample {when} was already taken at {_clock(row['measured_at'])}, nothing added "
            f"(one sample per queue_sample_interval): {counts}"
        )


def _clock(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def latest_sample(
    conn: psycopg.Connection, schema: str, since: datetime | None = None
) -> dict[str, Any] | None:
    """The sample measured last in ``schema`` (only one measured at or after ``since``,
    when given: a run's own); None when there is none."""
    query = sql.SQL(
        "select * from {} where measured_at >= coalesce(%s::timestamptz, '-infinity')"
        " order by measured_at desc limit 1"
    )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query.format(sql.Identifier(schema, SAMPLE_MODEL)), [since])
        return cur.fetchone()


def check_view_is_built(conn: psycopg.Connection, schema: str, target: str) -> None:
    """Samples read the view: say how to build it when it is not there."""
    name = sql.Identifier(schema, VIEW).as_string(conn)
    if conn.execute("select to_regclass(%s)", [name]).fetchone() == (None,):
        raise SampleError(
            f"{VIEW} is not built in schema '{schema}', and samples read it. Fix: deploy it "
            f"first (`buildqueue build --target {target}`, or `dbt build --target {target} "
            "--vars ...` as in the README's deploy section), then sample."
        )


def rows_inserted(outcome: DbtOutcome) -> int:
    """How many rows the sample model's run inserted (0: its bucket was already sampled)."""
    for node_result in getattr(outcome.result.result, "results", None) or []:
        if getattr(node_result.node, "name", None) == SAMPLE_MODEL:
            return int((node_result.adapter_response or {}).get("rows_affected") or 0)
    return 0


def take_sample(project: DbtProject, vars: dict[str, Any] | None = None) -> Sample:
    """Run the sample model once; return the row this run inserted, or the bucket's
    existing one. A row this run committed is reported as added even if dbt then failed
    (its connection died after the commit)."""
    schema = project.view_schema()
    with project.database.connect() as conn:
        check_view_is_built(conn, schema, project.target)
        started = conn.execute("select clock_timestamp()").fetchone()[0]
    clock = time.perf_counter()
    outcome = project.invoke("run", "--select", SAMPLE_MODEL, vars=vars, check=False)
    seconds = time.perf_counter() - clock
    with project.database.connect() as conn:
        own = latest_sample(conn, schema, since=started)
        if own is not None and (rows_inserted(outcome) or not outcome.success):
            return Sample(row=own, added=True, seconds=seconds)
        if not outcome.success:
            error = DbtConnectionError if lost_connection(outcome) else DbtError
            raise error(outcome.describe())
        if rows_inserted(outcome):
            raise SampleError(
                f"The sample this run added to {schema}.{SAMPLE_MODEL} was pruned at once. "
                "Fix: make var queue_sample_retention longer than queue_sample_interval."
            )
        row = latest_sample(conn, schema)
    if row is None:
        raise SampleError(f"dbt ran {SAMPLE_MODEL} but {schema}.{SAMPLE_MODEL} is empty.")
    return Sample(row=row, added=False, seconds=seconds)


def check_every(seconds: float) -> None:
    if seconds <= 0:
        raise SampleError("--every needs a positive number of seconds, e.g. --every 60")
