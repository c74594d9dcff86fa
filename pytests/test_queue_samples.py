"""Queue history: a sample per bucket, runs overlapping too, retention; a run reports its own."""

import json
import signal
import time
from collections.abc import Callable
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


def sample_cli(run: Callable, project: DbtProject, *args: str, vars: dict | None = None) -> Any:
    """`buildqueue sample` as a cron job runs it: the ci target, the source in --vars."""
    vars = json.dumps({"source_schema": EXAMPLE_SCHEMA, **(vars or {})})
    dsn, env = project.database.conninfo(), cli_env(BUILDQUEUE_SCHEMA=project.schema)
    return run("sample", "--database", dsn, "--target", "ci", "--vars", vars, *args, env=env)


def test_a_bucket_keeps_its_first_sample_past_a_full_refresh(samples_project: DbtProject) -> None:
    first, second = (take_sample(samples_project, ONE_BUCKET) for _ in "12")  # one bucket
    assert (first.added, second.added, second.row) == (True, False, first.row)
    assert "was already taken" in second.describe() and first.row in samples(samples_project)
    assert len(before := samples(samples_project)) == 2  # the fixture's and this bucket's
    build = ("build", "--exclude", "resource_type:seed", "--full-refresh")
    samples_project.invoke(*build, vars=ONE_BUCKET)  # the retention keeps the bucket's sample
    assert samples(samples_project) == before


def test_overlapping_runs_leave_one_sample_per_bucket(samples_project: DbtProject) -> None:
    """Two samplers held at their insert (share lock) till both saw the bucket empty: one row."""
    table, db = sql.Identifier(samples_project.schema, SAMPLE_MODEL), samples_project.database
    waiting = ("select count(*) from pg_locks join pg_stat_activity using (pid) where relation ="
               " %s::regclass and not granted and query ilike '%%insert into%%'")  # fmt: skip
    runs = []
    with db.connect(autocommit=False) as blocker, db.connect() as conn:
        blocker.execute(sql.SQL("lock table {} in share mode").format(table))
        try:
            runs = [sample_cli(start_cli, samples_project, vars=ONE_BUCKET) for _ in "ab"]
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


def test_each_run_prunes_samples_past_the_retention(samples_project: DbtProject) -> None:
    plant = sql.SQL("insert into {} select date_trunc('minute', now()) - %s * interval '1 day',"
                    " now() - %s * interval '1 day', 0, 0, 0, 0, 0, 0, 0, 0, 0"
                    ).format(sql.Identifier(samples_project.schema, SAMPLE_MODEL))  # fmt: skip
    with samples_project.database.connect() as conn:
        conn.cursor().executemany(plant, [[40, 40], [29, 29]])
    now, run = samples(samples_project)[-1]["sampled_at"], ("run", "--select", SAMPLE_MODEL)
    ages = lambda: [(now - s["sampled_at"]).days for s in samples(samples_project)]  # noqa: E731
    assert ages() == [40, 29, 0]
    samples_project.invoke(*run)  # default retention: 30 days
    assert ages()[:2] == [29, 0]
    samples_project.invoke(*run, vars={"queue_sample_retention": "1 day"})
    assert ages()[:1] == [0]  # pruned although this run's bucket had its sample already


def test_a_run_reports_its_own_sample_not_an_older_one(samples_project: DbtProject) -> None:
    """Retention under the interval would prune this run's sample: an error (model or sampler)."""
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
    done = sample_cli(run_in_subprocess, samples_project, vars=SECOND)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("sample ") and LINE in line and COUNTS in line, line
    assert len(samples(samples_project)) == 2


def test_sample_without_the_view_says_how_to_build_it(project: Any, samples_schema: str) -> None:
    done = sample_cli(run_in_subprocess, DbtProject(project.database, "ci", samples_schema))
    assert (done.returncode, done.stderr.strip()) == (1, "error: view_build_queue_status is not"
        f" built in schema '{samples_schema}', and samples read it. Fix: deploy it first"
        " (`buildqueue build --target ci`, or `dbt build --target ci --vars ...` as in the"
        " README's deploy section), then sample.")  # fmt: skip


def test_sample_every_n_seconds_until_ctrl_c(samples_project: DbtProject) -> None:
    process = sample_cli(start_cli, samples_project, "--every", "1", vars=SECOND)
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
