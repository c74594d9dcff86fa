"""The queue history (build_queue_samples): one sample per run and bucket, pruned, from the CLI.

Each test builds the view and the samples table in its own scratch schema over the example
(fixtures `samples_project`, `samples_schema`; dropped afterwards). The building of the
samples themselves is the real `dbt run --select build_queue_samples`, in-process or as
`buildqueue sample` in a process of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.database import Database
from buildqueue.dbt import DbtError, DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.perf.fleet import status_ids
from buildqueue.report import fetch_rows
from buildqueue.sampler import SAMPLE_MODEL, SampleError, take_sample
from support.cli_process import run_in_subprocess
from support.scratch import EXAMPLE_SCHEMA as SOURCE_SCHEMA

ONE_BUCKET = {"queue_sample_interval": "1000 weeks", "queue_sample_retention": "1000 weeks"}
"""Buckets so long that runs seconds apart certainly share one (and it is not pruned)."""


TIME_INDEPENDENT = {
    "systems_queued": 3,
    "systems_building": 2,
    "systems_ready": 1,
    "packages_pending": 3,
    "packages_building": 5,
    "packages_completed": 55,
    "packages_cached": 48,
    "active_workers": 5,
}
"""The example's sample, except the stale count (heartbeat ages grow as the session runs)."""


def summarise(view_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a sample must hold for these rows of the view, computed here independently."""
    return {
        "systems_queued": len(view_rows),
        "systems_building": sum(row["status"] == "building" for row in view_rows),
        "systems_ready": sum(row["status"] == "ready_for_system_build" for row in view_rows),
        "systems_with_stale_workers": sum(row["has_stale_workers"] for row in view_rows),
        "packages_pending": sum(row["pending_packages"] for row in view_rows),
        "packages_building": sum(row["building_packages"] for row in view_rows),
        "packages_completed": sum(row["completed_packages"] for row in view_rows),
        "packages_cached": sum(row["cached_packages"] for row in view_rows),
        "active_workers": len({worker for row in view_rows for worker in row["worker_ids"]}),
        "latest_heartbeat": max(
            (row["latest_heartbeat"] for row in view_rows if row["latest_heartbeat"]),
            default=None,
        ),
    }


def samples(database: Database, schema: str) -> list[dict[str, Any]]:
    """Every sample in ``schema``, oldest first."""
    with database.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("select * from {} order by sampled_at").format(
                sql.Identifier(schema, SAMPLE_MODEL)
            )
        )
        return list(cur.fetchall())


def counts(sample: dict[str, Any]) -> dict[str, int]:
    return {key: value for key, value in sample.items() if key not in {"sampled_at", "measured_at"}}


def view_summary(database: Database, schema: str) -> dict[str, int]:
    with database.connect() as conn:
        return summarise(fetch_rows(conn, schema))


def sample_run(project: DbtProject, **vars: str) -> None:
    project.invoke("run", "--select", SAMPLE_MODEL, vars=vars or None)


def cli_env(schema: str) -> dict[str, str]:
    """The environment of a user whose dbt target builds into ``schema``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BUILDQUEUE_"))}
    return {**env, "BUILDQUEUE_SCHEMA": schema}


def cli(database: Database, *args: str, vars: dict[str, str] | None = None) -> list[str]:
    """`buildqueue sample` arguments for the test database and the ci target, with the
    source schema in --vars as a cron run gives it (plus ``vars``)."""
    given = {"source_schema": SOURCE_SCHEMA, **(vars or {})}
    return [
        "sample",
        "--database",
        database.conninfo(),
        "--target",
        "ci",
        "--vars",
        json.dumps(given),
        *args,
    ]


def start_sampler(
    database: Database, schema: str, *args: str, vars: dict[str, str]
) -> subprocess.Popen[str]:
    """`python -m buildqueue sample ARGS` in a process of its own, building into ``schema``."""
    return subprocess.Popen(
        [sys.executable, "-m", "buildqueue", *cli(database, *args, vars=vars)],
        cwd=PROJECT_DIR,
        env=cli_env(schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- one sample per run, reflecting the view ------------------------------------------


def test_a_sample_is_appended_per_run_and_reflects_the_view(
    database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    (first,) = samples(database, samples_schema)  # taken by the build of the fixture
    assert {k: v for k, v in counts(first).items() if k in TIME_INDEPENDENT} == TIME_INDEPENDENT
    time.sleep(1.1)  # the next 1-second bucket
    before = view_summary(database, samples_schema)
    sample_run(samples_project, queue_sample_interval="1 second")
    after = view_summary(database, samples_schema)
    taken = samples(database, samples_schema)
    assert len(taken) == 2
    assert taken[0] == first, "an earlier sample is never rewritten"
    assert counts(taken[1]) in (before, after)
    assert taken[1]["sampled_at"] > first["sampled_at"]
    assert timedelta(0) <= taken[1]["measured_at"] - taken[1]["sampled_at"] < timedelta(seconds=1)


def test_a_sample_sees_the_queue_as_it_is_now(
    database: Database, example_copy: Callable[..., DbtProject]
) -> None:
    """Build one of server-a's packages in a copy of the example: the next sample has one
    package less pending (the session's shared example is never written to)."""
    project = example_copy("samples_live")
    schema = project.view_schema()
    sample_run(project)  # the first sample, as the samples_project fixture takes it
    ids = status_ids()
    with database.connect(options=f"-c search_path={schema}") as conn:
        built = conn.execute(
            "update derivations set status_id = %(complete)s where id = ("
            " select package.id from derivation_dependencies as dependency"
            " join derivations as package on package.id = dependency.depends_on_id"
            " where dependency.derivation_id = 1 and package.derivation_type = 'package'"
            "   and package.status_id not in (%(complete)s, %(building)s, %(pushed)s)"
            " limit 1)",
            {
                "complete": ids["build-complete"],
                "building": ids["build-inprogress"],
                "pushed": ids["cache-pushed"],
            },
        )
        assert built.rowcount == 1
    time.sleep(1.1)
    sample_run(project, queue_sample_interval="1 second")
    taken = samples(database, schema)
    assert len(taken) == 2
    assert (taken[0]["packages_pending"], taken[0]["packages_completed"]) == (3, 55)
    assert (taken[1]["packages_pending"], taken[1]["packages_completed"]) == (2, 56)


# --- idempotent within a bucket, also when runs overlap -----------------------------------


def test_two_runs_in_one_bucket_leave_one_sample(
    database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    first = take_sample(samples_project, ONE_BUCKET)
    second = take_sample(samples_project, ONE_BUCKET)
    assert (first.added, second.added) == (True, False)
    assert second.row == first.row, "the bucket's sample stays as the first run took it"
    bucket = first.row["sampled_at"]
    in_bucket = [s for s in samples(database, samples_schema) if s["sampled_at"] == bucket]
    assert in_bucket == [first.row]


def _blocked_inserts(database: Database, schema: str) -> int:
    with database.connect() as conn:
        (waiting,) = conn.execute(
            "select count(*) from pg_locks join pg_stat_activity using (pid)"
            " where pg_locks.relation = %s::regclass and not pg_locks.granted"
            " and pg_stat_activity.query ilike '%%insert into%%'",
            [f'"{schema}"."{SAMPLE_MODEL}"'],
        ).fetchone()
        return int(waiting)


def test_overlapping_runs_leave_one_sample_per_bucket(
    database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    """Two `buildqueue sample` processes reach their insert at the same moment.

    A lock on the samples table (share mode: reads pass, inserts wait) holds both runs at
    their insert until both have read the view and found the bucket empty; then it is
    released and both insert the same bucket at once. One row must result, and both runs
    must succeed (dbt's delete+insert would fail one of them on the primary key).
    """
    table = sql.Identifier(samples_schema, SAMPLE_MODEL)
    runs: list[subprocess.Popen[str]] = []
    with database.connect(autocommit=False) as blocker:
        blocker.execute(sql.SQL("lock table {} in share mode").format(table))
        try:
            for _ in range(2):
                runs.append(start_sampler(database, samples_schema, vars=ONE_BUCKET))
            deadline = time.monotonic() + 300
            while _blocked_inserts(database, samples_schema) < 2:
                failed = [run for run in runs if run.poll() is not None]
                assert not failed, failed[0].communicate()
                assert time.monotonic() < deadline, "the two runs never both reached their insert"
                time.sleep(0.2)
        except BaseException:
            for run in runs:
                run.kill()
                run.wait()
            raise
        finally:
            blocker.rollback()  # releases the lock: both inserts go ahead together
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    lines = [stdout.strip() for stdout, _ in outputs]
    added = [line for line in lines if "already taken" not in line]
    assert len(added) == 1 and "3 systems queued" in added[0], lines
    taken = samples(database, samples_schema)
    assert len(taken) == 2, "the fixture's sample plus exactly one in the long bucket"
    assert len({sample["sampled_at"] for sample in taken}) == 2


def test_full_refresh_keeps_the_history(
    database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    before = samples(database, samples_schema)
    samples_project.invoke("build", "--exclude", "resource_type:seed", "--full-refresh")
    assert samples(database, samples_schema)[: len(before)] == before


# --- retention ---------------------------------------------------------------------------


def _plant_old_samples(database: Database, schema: str, *ages_in_days: int) -> None:
    table = sql.Identifier(schema, SAMPLE_MODEL)
    with database.connect() as conn:
        for age in ages_in_days:
            conn.execute(
                sql.SQL(
                    "insert into {} select date_trunc('minute', now()) - %s * interval '1 day',"
                    " now() - %s * interval '1 day', 0, 0, 0, 0, 0, 0, 0, 0, 0"
                ).format(table),
                [age, age],
            )


def test_each_run_prunes_samples_past_the_retention(
    database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    _plant_old_samples(database, samples_schema, 40, 29)
    now = samples(database, samples_schema)[-1]["sampled_at"]

    def ages() -> list[int]:
        return [(now - s["sampled_at"]).days for s in samples(database, samples_schema)]

    assert ages() == [40, 29, 0]
    sample_run(samples_project)  # default retention: 30 days
    assert ages()[:2] == [29, 0]
    sample_run(samples_project, queue_sample_retention="1 day")
    assert ages()[:1] == [0], "pruned although this run's bucket already had its sample"


@pytest.mark.parametrize("var", ["queue_sample_interval", "queue_sample_retention"])
def test_an_empty_interval_is_refused(samples_project: DbtProject, var: str) -> None:
    outcome = samples_project.invoke(
        "run", "--select", SAMPLE_MODEL, vars={var: "0 minutes"}, check=False
    )
    assert not outcome.success
    assert f"Invalid value for var '{var}': \"0 minutes\"" in outcome.describe()
    assert "longer than zero" in outcome.describe()


# --- buildqueue sample -------------------------------------------------------------------


def test_sample_once_from_the_cli(
    database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    time.sleep(1.1)  # the next 1-second bucket
    completed = run_in_subprocess(
        *cli(database, vars={"queue_sample_interval": "1 second"}),
        env=cli_env(samples_schema),
    )
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stdout.splitlines()
    assert line.startswith("sample "), line
    assert (
        "3 systems queued (2 building, 1 ready, " in line
        and "packages 3 pending, 5 building, 55 completed, 48 cached; 5 active workers" in line
    ), line
    assert len(samples(database, samples_schema)) == 2


def test_sample_without_the_view_says_how_to_build_it(
    database: Database, build: object, samples_schema: str
) -> None:
    completed = run_in_subprocess(*cli(database), env=cli_env(samples_schema))
    assert completed.returncode == 1
    assert completed.stderr.strip() == (
        f"error: view_build_queue_status is not built in schema '{samples_schema}', and "
        "samples read it. Fix: deploy it first (`buildqueue build --target ci`, or `dbt build "
        "--target ci --vars ...` as in the README's deploy section), then sample."
    )
    with database.connect() as conn:
        assert conn.execute("select to_regnamespace(%s)", [samples_schema]).fetchone() == (None,)


@pytest.fixture
def sampling(database: Database, samples_project: DbtProject, samples_schema: str) -> Iterator:
    process = start_sampler(
        database, samples_schema, "--every", "1", vars={"queue_sample_interval": "1 second"}
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def _added(line: str) -> bool:
    """Whether a `buildqueue sample` line reports a sample it added (not one already taken:
    two runs a second apart can still fall in one 1-second bucket)."""
    return line.startswith("sample ") and "was already taken" not in line


def test_sample_every_n_seconds_until_ctrl_c(
    database: Database, samples_schema: str, sampling: subprocess.Popen[str]
) -> None:
    assert sampling.stdout is not None
    lines: list[str] = []
    while sum(map(_added, lines)) < 2 and len(lines) < 10:
        lines.append(sampling.stdout.readline())
    assert all(line.startswith("sample ") for line in lines), lines
    sampling.send_signal(signal.SIGINT)
    stdout, stderr = sampling.communicate(timeout=120)
    assert sampling.returncode == 130, stderr
    assert stderr.rstrip().endswith("interrupted."), stderr
    added = [line for line in lines + stdout.splitlines() if _added(line)]
    assert len(added) >= 2, lines
    taken = samples(database, samples_schema)
    # the fixture's, then one per reported sample (plus one a Ctrl-C cut short of its report)
    assert 1 + len(added) <= len(taken) <= 2 + len(added), (taken, added)
    assert len({sample["sampled_at"] for sample in taken}) == len(taken)


def test_every_needs_a_positive_number_of_seconds(database: Database, samples_schema: str) -> None:
    completed = run_in_subprocess(*cli(database, "--every", "0"), env=cli_env(samples_schema))
    assert completed.returncode == 1, completed.stderr
    assert "error: --every needs a positive number of seconds" in completed.stderr
    assert "sampling" not in completed.stderr, "the error comes before the loop's first line"


def test_a_run_reports_its_own_sample_not_an_older_one(
    samples_project: DbtProject, samples_schema: str, database: Database
) -> None:
    """A run whose sample is pruned in the same run (retention shorter than the interval)
    must not present the bucket's older sample as the one it added."""
    time.sleep(1.1)
    take_sample(samples_project, {"queue_sample_interval": "1 second"})  # a recent older sample
    with pytest.raises((DbtError, SampleError)) as raised:
        take_sample(
            samples_project,
            {"queue_sample_interval": "1 day", "queue_sample_retention": "1 minute"},
        )
    assert "queue_sample_retention" in str(raised.value)


def test_a_committed_sample_is_reported_even_if_dbt_then_fails(
    samples_project: DbtProject, samples_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt reports a failure after the sample's transaction committed (its connection died
    on the way out): the sample is there, so it is reported as added, not as failed."""
    real_invoke = DbtProject.invoke

    def commit_then_fail(self: DbtProject, *args: str, **kwargs: Any) -> Any:
        outcome = real_invoke(self, *args, **kwargs)
        outcome.success = False
        outcome.failures.append("server closed the connection unexpectedly")
        return outcome

    time.sleep(1.1)
    monkeypatch.setattr(DbtProject, "invoke", commit_then_fail)
    sample = take_sample(samples_project, {"queue_sample_interval": "1 second"})
    assert sample.added, sample.describe()


def test_samples_table_is_keyed_by_sample_time(
    database: Database, samples_project: DbtProject, samples_schema: str
) -> None:
    with database.connect() as conn:
        key = conn.execute(
            "select array_agg(attname) from pg_index join pg_attribute"
            " on attrelid = indrelid and attnum = any(indkey)"
            " where indrelid = %s::regclass and indisprimary",
            [f'"{samples_schema}"."{SAMPLE_MODEL}"'],
        ).fetchone()
    assert key == (["sampled_at"],)
    with pytest.raises(psycopg.errors.UniqueViolation), database.connect() as conn:
        conn.execute(
            sql.SQL("insert into {} select * from {}").format(
                sql.Identifier(samples_schema, SAMPLE_MODEL),
                sql.Identifier(samples_schema, SAMPLE_MODEL),
            )
        )
