"""A queue sample: `dbt run --select build_queue_samples` (cron's job in production)."""

import time
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.dbt import DbtConnectionError, DbtError, DbtProject, lost_connection

SAMPLE_MODEL = "build_queue_samples"


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
        r, _clock = self.row, lambda moment: f"{moment:%Y-%m-%d %H:%M:%S %Z}".strip()
        counts = (
            f"{r['systems_queued']} systems queued ({r['systems_building']} building, "
            f"{r['systems_ready']} ready, {r['systems_with_stale_workers']} with stale "
            f"workers); packages {r['packages_pending']} pending, {r['packages_building']} "
            f"building, {r['packages_completed']} completed, {r['packages_cached']} cached; "
            f"{r['active_workers']} active workers"
        )
        if self.added:
            return f"sample {_clock(r['sampled_at'])}: {counts} ({self.seconds:.1f} s)"
        return (
            f"sample {_clock(r['sampled_at'])} was already taken at {_clock(r['measured_at'])}"
            f", nothing added (one sample per queue_sample_interval): {counts}"
        )


def take_sample(project: DbtProject, vars: dict[str, Any] | None = None) -> Sample:
    """The row this run inserted (even if dbt failed after its commit), or the bucket's."""
    schema, target = project.view_schema(), project.target
    latest = sql.SQL(
        "select * from {} where measured_at >= %s::timestamptz order by measured_at desc limit 1"
    ).format(sql.Identifier(schema, SAMPLE_MODEL))
    with project.database.connect() as conn:
        view = sql.Identifier(schema, "view_build_queue_status").as_string(conn)
        if conn.execute("select to_regclass(%s)", [view]).fetchone() == (None,):
            raise SampleError(
                f"view_build_queue_status is not built in schema '{schema}', and samples read "
                f"it. Fix: deploy it first (`buildqueue build --target {target}`, or `dbt build "
                f"--target {target} --vars ...` as in the README's deploy section), then sample."
            )
        started = conn.execute("select clock_timestamp()").fetchone()[0]
    clock = time.perf_counter()
    outcome = project.invoke("run", "--select", SAMPLE_MODEL, vars=vars, check=False)
    seconds = time.perf_counter() - clock
    inserted = sum(
        int((result.adapter_response or {}).get("rows_affected") or 0)
        for result in getattr(outcome.result.result, "results", None) or []
        if getattr(result.node, "name", None) == SAMPLE_MODEL
    )
    with project.database.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        own = cur.execute(latest, [started]).fetchone()
        if own is not None and (inserted or not outcome.success):
            return Sample(row=own, added=True, seconds=seconds)
        if not outcome.success:
            raise (DbtConnectionError if lost_connection(outcome) else DbtError)(outcome.describe())
        if inserted:
            raise SampleError(
                f"The sample this run added to {schema}.{SAMPLE_MODEL} was pruned at once. "
                "Fix: make var queue_sample_retention longer than queue_sample_interval."
            )
        row = cur.execute(latest, ["-infinity"]).fetchone()
    if row is None:
        raise SampleError(f"dbt ran {SAMPLE_MODEL} but {schema}.{SAMPLE_MODEL} is empty.")
    return Sample(row=row, added=False, seconds=seconds)
