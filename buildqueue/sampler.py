"""Take queue samples: `dbt run --select build_queue_samples`, once or every N seconds.

The queue history (models/marts/monitoring/build_queue_samples.sql) grows by one row per
bucket of var `queue_sample_interval` each time the model runs. In production a cron job
or a systemd timer runs that dbt command (docs/operations.md); `buildqueue sample
--every N` is the same command in a loop, for a developer's machine or a quick look.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.dbt import DbtError, DbtOutcome, DbtProject

SAMPLE_MODEL = "build_queue_samples"
"""The incremental model holding the queue history."""

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


def latest_sample(conn: psycopg.Connection, schema: str) -> dict[str, Any] | None:
    """The sample measured last in ``schema`` (None when the table is empty): the current
    bucket's, whether this run added it or an earlier one did."""
    query = sql.SQL("select * from {} order by measured_at desc limit 1").format(
        sql.Identifier(schema, SAMPLE_MODEL)
    )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query)
        return cur.fetchone()


def check_view_is_built(conn: psycopg.Connection, schema: str, target: str) -> None:
    """Samples read the view: say how to build it when it is not there."""
    found = conn.execute("select to_regclass(%s)", [f'"{schema}"."{VIEW}"']).fetchone()
    if found is None or found[0] is None:
        raise SampleError(
            f"{VIEW} is not built in schema '{schema}', and samples read it. Fix: deploy it "
            f"first (`buildqueue build --target {target}`, or `dbt build --target {target} "
            "--vars ...` as in the README's deploy section), then sample."
        )


def rows_inserted(outcome: DbtOutcome) -> int:
    """How many rows the sample model's run inserted (0: its bucket was already sampled)."""
    for node_result in getattr(outcome.result.result, "results", None) or []:
        response = getattr(node_result, "adapter_response", None) or {}
        if getattr(node_result.node, "name", None) == SAMPLE_MODEL:
            return int(response.get("rows_affected") or 0)
    raise SampleError(f"dbt did not run {SAMPLE_MODEL}: {outcome.describe()}")


def take_sample(project: DbtProject, vars: dict[str, Any] | None = None) -> Sample:
    """Run the sample model once; return the bucket's sample and whether this run added it."""
    schema = project.view_schema()
    with project.database.connect() as conn:
        check_view_is_built(conn, schema, project.target)
    started = time.perf_counter()
    outcome = project.invoke("run", "--select", SAMPLE_MODEL, vars=vars, check=False)
    seconds = time.perf_counter() - started
    if isinstance(getattr(outcome.result, "exception", None), KeyboardInterrupt):
        raise KeyboardInterrupt  # dbtRunner returns Ctrl-C as a failed result: stop, do not report
    if not outcome.success:
        raise DbtError(outcome.describe())
    with project.database.connect() as conn:
        row = latest_sample(conn, schema)
    if row is None:  # the run succeeded yet left no row: only if retention prunes it at once
        raise SampleError(
            f"{schema}.{SAMPLE_MODEL} is empty after a successful sample run. Fix: make var "
            "queue_sample_retention longer than queue_sample_interval."
        )
    return Sample(row=row, added=rows_inserted(outcome) > 0, seconds=seconds)


def check_every(seconds: float) -> None:
    """--every must be a positive number of seconds."""
    if seconds <= 0:
        raise SampleError("--every needs a positive number of seconds, e.g. --every 60")


def sample_every(
    project: DbtProject,
    seconds: float,
    vars: dict[str, Any] | None = None,
    *,
    report: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take a sample every ``seconds`` until Ctrl-C (KeyboardInterrupt propagates).

    Runs are scheduled on a fixed grid from the first one (start + k x seconds), so they
    do not drift by the time each run takes; a run that overruns skips the slots it missed.
    """
    check_every(seconds)
    start = time.monotonic()
    while True:
        report(take_sample(project, vars).describe())
        slot = int((time.monotonic() - start) // seconds) + 1
        sleep(max(0.0, start + slot * seconds - time.monotonic()))
