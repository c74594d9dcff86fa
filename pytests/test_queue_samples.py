"""The queue history (build_queue_samples): one sample per bucket, also when runs overlap,
pruned past the retention; `buildqueue sample` reports what its own run added."""

import json
import signal
import time
from typing import Any

import pytest
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.dbt import DbtError, DbtProject
from buildqueue.sampler import SAMPLE_MODEL, SampleError, take_sample
from support.cli_process import cli_env, run_in_subprocess, start_cli
from support.scratch import EXAMPLE_SCHEMA

ONE_BUCKET = {"queue_sample_interval": "1000 weeks", "queue_sample_retention": "2000 weeks"}
SECOND = {"queue_sample_interval": "1 second"}  # after a 1.1 s sleep: a bucket of its own
LINE = "3 systems queued (2 building, 1 ready, "
COUNTS = "packages 3 pending, 5 building, 55 completed, 48 cached; 5 active workers"


def samples(project: DbtProject) -> list[dict[str, Any]]:
    table = sql.Identifier(project.schema, SAMPLE_MODEL)
    with project.database.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL("select * from {} order by sampled_at").format(table)).fetchall()


def sample_cli(project: DbtProject, *args: str, vars: dict | None = None) -> dict[str, Any]:
    """`buildqueue sample` as a cron job runs it: the ci target, the source in --vars."""
    vars = json.dumps({"source_schema": EXAMPLE_SCHEMA, **(vars or {})})
    args = (
        "sample",
        "--database",
        project.database.conninfo(),
        "--target",
        "ci",
        "--vars",
        vars,
        *args,
    )
    return {"args": args, "env": cli_env(BUILDQUEUE_SCHEMA=project.schema)}


def test_two_runs_in_one_bucket_leave_its_first_sample(samples_project: DbtProject) -> None:
    first, second = (take_sample(samples_project, ONE_BUCKET) for _ in "12")
    assert (first.added, second.added, second.row) == (True, False, first.row)
    assert "was already taken" in second.describe() and first.row in samples(samples_project)
    assert len(samples(samples_project)) == 2  # the fixture's and this bucket's


def test_overlapping_runs_leave_one_sample_per_bucket(samples_project: DbtProject) -> None:
    """Two `buildqueue sample` processes held at their insert (a share lock: reads pass)
    until both found the bucket empty, then let go at once: one row, both succeed."""
    table, db = sql.Identifier(samples_project.schema, SAMPLE_MODEL), samples_project.database
    waiting = ("select count(*) from pg_locks join pg_stat_activity using (pid) where relation ="
               " %s::regclass and not granted and query ilike '%%insert into%%'")  # fmt: skip
    runs, command = [], sample_cli(samples_project, vars=ONE_BUCKET)
    with db.connect(autocommit=False) as blocker, db.connect() as conn:
        blocker.execute(sql.SQL("lock table {} in share mode").format(table))
        try:
            runs = [start_cli(*command["args"], env=command["env"]) for _ in "ab"]
            while conn.execute(waiting, [table.as_string(conn)]).fetchone()[0] < 2:
                assert all(run.poll() is None for run in runs), runs[0].communicate()
                time.sleep(0.2)
        finally:
            blocker.rollback()  # both inserts go ahead together
            outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    added = [out for out, _ in outputs if "already taken" not in out]
    assert len(added) == 1 and LINE in added[0], outputs
    assert len({s["sampled_at"] for s in samples(samples_project)}) == 2


def test_full_refresh_keeps_the_history(samples_project: DbtProject) -> None:
    before = samples(samples_project)
    samples_project.invoke("build", "--exclude", "resource_type:seed", "--full-refresh")
    assert samples(samples_project)[: len(before)] == before


def test_each_run_prunes_samples_past_the_retention(samples_project: DbtProject) -> None:
    plant = sql.SQL("insert into {} select date_trunc('minute', now()) - %s * interval '1 day',"
                    " now() - %s * interval '1 day', 0, 0, 0, 0, 0, 0, 0, 0, 0")  # fmt: skip
    with samples_project.database.connect() as conn:
        for age in (40, 29):
            conn.execute(
                plant.format(sql.Identifier(samples_project.schema, SAMPLE_MODEL)), [age] * 2
            )
    now = samples(samples_project)[-1]["sampled_at"]
    assert [(now - s["sampled_at"]).days for s in samples(samples_project)] == [40, 29, 0]
    samples_project.invoke("run", "--select", SAMPLE_MODEL)  # default retention: 30 days
    assert [(now - s["sampled_at"]).days for s in samples(samples_project)][:2] == [29, 0]
    samples_project.invoke(
        "run", "--select", SAMPLE_MODEL, vars={"queue_sample_retention": "1 day"}
    )
    # pruned although this run's bucket had its sample already
    assert [(now - s["sampled_at"]).days for s in samples(samples_project)][:1] == [0]


def test_a_run_reports_its_own_sample_not_an_older_one(samples_project: DbtProject) -> None:
    """Retention shorter than the interval would prune this run's sample at once: an error
    (from the model's var check, or from take_sample should the model insert and prune)."""
    time.sleep(1.1)
    take_sample(samples_project, SECOND)  # a recent older sample
    pruned = {"queue_sample_interval": "1 day", "queue_sample_retention": "1 minute"}
    with pytest.raises((DbtError, SampleError), match=r"queue_sample_retention.*longer than"):
        take_sample(samples_project, pruned)


def test_a_committed_sample_is_reported_added(samples_project: Any, monkeypatch: Any) -> None:
    """dbt fails after the sample's commit (its connection died): reported as added."""
    real = DbtProject.invoke

    def commit_then_fail(self: DbtProject, *args: str, **kwargs: Any) -> Any:
        outcome = real(self, *args, **kwargs)
        outcome.success, outcome.failures = False, ["server closed the connection unexpectedly"]
        for result in outcome.result.result.results:  # dbt never read the row count
            result.adapter_response = {}
        return outcome

    time.sleep(1.1)
    monkeypatch.setattr(DbtProject, "invoke", commit_then_fail)
    assert take_sample(samples_project, SECOND).added


def test_sample_once_from_the_cli(samples_project: DbtProject) -> None:
    time.sleep(1.1)
    command = sample_cli(samples_project, vars=SECOND)
    done = run_in_subprocess(*command["args"], env=command["env"])
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("sample ") and LINE in line and COUNTS in line, line
    assert len(samples(samples_project)) == 2


def test_sample_without_the_view_says_how_to_build_it(project: Any, samples_schema: str) -> None:
    command = sample_cli(DbtProject(project.database, "ci", samples_schema))
    done = run_in_subprocess(*command["args"], env=command["env"])
    assert (done.returncode, done.stderr.strip()) == (1, (
        f"error: view_build_queue_status is not built in schema '{samples_schema}', and "
        "samples read it. Fix: deploy it first (`buildqueue build --target ci`, or `dbt build "
        "--target ci --vars ...` as in the README's deploy section), then sample."
    ))  # fmt: skip


def test_sample_every_n_seconds_until_ctrl_c(samples_project: DbtProject) -> None:
    command = sample_cli(samples_project, "--every", "1", vars=SECOND)
    process = start_cli(*command["args"], env=command["env"])
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and stderr.rstrip().endswith("interrupted."), stderr
    assert all(line.startswith("sample ") for line in lines + stdout.splitlines()), lines
    added = [line for line in lines + stdout.splitlines() if "already taken" not in line]
    taken = samples(samples_project)  # the fixture's, one per report, + one cut short
    assert len(added) >= 2 and 1 + len(added) <= len(taken) <= 2 + len(added), (taken, added)
    assert len({sample["sampled_at"] for sample in taken}) == len(taken)
