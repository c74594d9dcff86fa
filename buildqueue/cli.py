"""The `buildqueue` command: the demo (main job), builds and the test suite.

    buildqueue demo [--watch N]    start the database, load the example, build, print the view
    buildqueue build [--fixtures] [--vars Y]  dbt build (models, data tests, unit tests)
    buildqueue dbt ARGS...         any dbt command against the chosen database
    buildqueue show [--watch N]    print the view as it is (no build)
    buildqueue view-sql [--vars Y] print the view's create-or-replace statement (migrations)
    buildqueue test [PYTEST ARGS]  the whole test suite (dbt build runs inside it)
    buildqueue sample [--every N]  add a queue sample (build_queue_samples); every N s until Ctrl-C
    buildqueue load [SIZES...]     how many Grafana viewers a fleet's view carries
    buildqueue bench [SIZES...]    time the view on synthetic fleets (docs/performance.md)

Every command takes --database (embedded | env | testcontainers | DSN; default
$BUILDQUEUE_DATABASE or embedded) and --target (dev | ci | prod).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml

from buildqueue.database import (
    ConnectionFailed,
    Database,
    DatabaseError,
    check_identifier,
    deadline,
    open_database,
    timeout_seconds,
)
from buildqueue.dbt import DbtError, DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.repeat import every
from buildqueue.report import fetch_rows, print_rows
from buildqueue.sampler import SAMPLE_MODEL, SampleError, check_every, take_sample

SCHEMA_ENV = "BUILDQUEUE_SCHEMA"
"""The schema profiles.yml.example builds in (an identifier: checked before dbt runs)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildqueue", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database", help="embedded (default), env, testcontainers or a DSN")
    common.add_argument("--target", default="dev", help="dbt target: dev (default), ci or prod")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", parents=[common], help="build the view over the example")
    demo.add_argument("--watch", type=float, metavar="N", help="refresh every N seconds")
    build = sub.add_parser("build", parents=[common], help="dbt build")
    build.add_argument("--fixtures", action="store_true", help="load the example fixtures")
    build.add_argument("--vars", help="dbt vars as YAML, e.g. '{source_schema: public}'")
    show = sub.add_parser("show", parents=[common], help="print the view (no build)")
    show.add_argument("--watch", type=float, metavar="N", help="refresh every N seconds")
    view_sql = sub.add_parser(
        "view-sql", parents=[common], help="print the view's create statement for a migration"
    )
    view_sql.add_argument("--vars", help="dbt vars as YAML, e.g. '{source_schema: public}'")
    sample = sub.add_parser("sample", parents=[common], help="add a queue history sample")
    sample.add_argument("--every", type=float, metavar="N", help="sample every N seconds")
    sample.add_argument("--vars", help="dbt vars as YAML, e.g. '{source_schema: public}'")
    dbt = sub.add_parser("dbt", parents=[common], help="run any dbt command")
    dbt.add_argument("args", nargs=argparse.REMAINDER)
    load = sub.add_parser("load", parents=[common], help="Grafana viewer capacity table")
    load.add_argument("sizes", nargs="*", help="fleets (default: 100x100 1000x200 1000x1000)")
    load.add_argument(
        "--refresh", type=float, nargs="+", default=[1.0, 5.0], help="refresh periods s (1 5)"
    )
    load.add_argument("--step-seconds", type=float, default=20.0, help="run per V (20)")
    load.add_argument("--p99", type=float, default=1.0, help="latency limit s (1)")
    load.add_argument("--max-viewers", type=int, default=256, help="search cap (256)")
    load.add_argument("--seed", type=int, default=1, help="fleet generator seed")
    load.add_argument("--dashboard", type=Path, help="dashboard JSON (grafana/dashboards/...)")
    sub.add_parser("test", help="run the whole test suite (arguments go to pytest)")
    bench = sub.add_parser("bench", parents=[common], help="benchmark on synthetic fleets")
    bench.add_argument("sizes", nargs="*", help="e.g. 1000x1000 1000x1000+h10 (default: all)")
    bench.add_argument("--runs", type=int, default=5, help="timed runs per query (median)")
    bench.add_argument("--seed", type=int, default=1, help="fleet generator seed")
    bench.add_argument("--no-baseline", action="store_true", help="time the view only")
    bench.add_argument(
        "--history-curve",
        action="store_true",
        help="view median per queue size (SIZES: 250 500 ...) without and with 10x history",
    )
    return parser


def show_view(db: Database, schema: str, watch: float | None, target: str = "dev") -> None:
    """Print the view once, or every ``watch`` seconds until Ctrl-C (surviving restarts)."""
    if watch is None:
        with db.connect() as conn:
            print_rows(fetch_rows(conn, schema, target))
        return
    if watch <= 0:
        raise DatabaseError("--watch needs a positive number of seconds, e.g. --watch 5")
    timeout = timeout_seconds()
    options = f"-c statement_timeout={int(timeout * 1000)}"
    held: list[psycopg.Connection] = []

    def refresh() -> None:
        if not held or held[0].closed:
            held[:] = [db.connect(options=options, application_name="buildqueue show")]
        try:
            with deadline(held[0], timeout + 5):
                rows = fetch_rows(held[0], schema, target)
        except ConnectionFailed:
            held.pop().close()
            raise
        sys.stdout.write("\033[2J\033[H" if sys.stdout.isatty() else "\n")
        print(
            f"view_build_queue_status at {time.strftime('%H:%M:%S')} "
            f"(every {watch:g}s, Ctrl-C to stop)"
        )
        print_rows(rows)

    every(watch, refresh, "show")


def _parse_vars(text: str | None) -> dict[str, Any] | None:
    """--vars as dbt reads it (a YAML mapping); a clear error otherwise."""
    if not text:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DbtError(
            f"--vars is not valid YAML ({error}). Fix: --vars '{{source_schema: public}}'."
        ) from error
    if not isinstance(value, dict):
        raise DbtError(
            f"--vars must be a YAML mapping, got {text!r}. Fix: --vars '{{source_schema: public}}'."
        )
    return value


def sample_queue(project: DbtProject, every_seconds: float | None, vars_text: str | None) -> int:
    """`buildqueue sample`: one sample, or one every ``every_seconds`` until Ctrl-C."""
    vars = _parse_vars(vars_text)
    if every_seconds is None:
        print(take_sample(project, vars).describe())
        return 0
    check_every(every_seconds)  # before the "sampling ..." line
    print(
        f"sampling {project.view_schema()}.{SAMPLE_MODEL} every {every_seconds:g}s "
        "(Ctrl-C to stop)",
        file=sys.stderr,
    )
    every(every_seconds, lambda: print(take_sample(project, vars).describe(), flush=True), "sample")
    return 0


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds like Ctrl-C: the embedded server and temp files go


def _redacted(arg: str) -> str:
    """``arg`` with a DSN's password replaced by ***."""
    return re.sub(r"(password=)\S*", r"\1***", re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", arg))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `buildqueue` command; its exit code (1 on an error, 130 on Ctrl-C)."""
    # Ctrl-C must stop every command even when we were started with SIGINT ignored (a
    # shell's background job): Python raises KeyboardInterrupt only from its own handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    argv = list(sys.argv[1:] if argv is None else argv)
    # dbt records sys.argv in target/run_results.json: never a DSN's password
    sys.argv = [_redacted(arg) for arg in sys.argv]
    if argv[:1] == ["test"]:
        # everything after `test` goes to pytest untouched (argparse would eat -q, -k ...)
        import pytest

        config = ["-c", str(PROJECT_DIR / "pyproject.toml"), "--rootdir", str(PROJECT_DIR)]
        return int(pytest.main([*config, *argv[1:]]))
    return run_command(_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Open the database, run the command's handler, stop the database whatever happens.

    A known error prints one "error: ..." line and returns 1; Ctrl-C prints
    "interrupted." and returns 130, without a traceback.
    """
    db: Database | None = None
    try:
        if os.environ.get(SCHEMA_ENV) is not None:
            check_identifier(os.environ[SCHEMA_ENV], SCHEMA_ENV)
        db = open_database(args.database)
        project = DbtProject(db, target=args.target, quiet=args.command != "dbt")
        return COMMANDS[args.command](db, project, args)
    except (DatabaseError, DbtError, SampleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted.", file=sys.stderr)
        return 130
    finally:
        if db is not None:
            db.stop()


def _demo(db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue demo`: build over the example fixtures, then print (or watch) the view."""
    print(f"database: {db.describe()}", file=sys.stderr)
    project.build(fixtures=True)
    show_view(db, project.view_schema(), args.watch, project.target)
    return 0


def _build(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue build`: dbt build, with the example fixtures on --fixtures."""
    print(project.build(fixtures=args.fixtures, vars=_parse_vars(args.vars)).describe())
    return 0


def _sample(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue sample`: one queue sample, or one every --every seconds."""
    return sample_queue(project, args.every, args.vars)


def _show(db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue show`: print (or watch) the view as it is, without building."""
    show_view(db, project.view_schema(), args.watch, project.target)
    return 0


def _load(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue load`: the Grafana viewer capacity table (the performance lab)."""
    from buildqueue.perf.capacity import load_command

    return load_command(project, args)


def _bench(db: Database, _project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue bench`: time the view on synthetic fleets (the performance lab)."""
    from buildqueue.perf.benchmark import bench_command

    return bench_command(db, args)


def _view_sql(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue view-sql`: print the view's create-or-replace statement."""
    from buildqueue.view_sql import view_sql

    sys.stdout.write(view_sql(project, _parse_vars(args.vars)))
    return 0


def _dbt(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue dbt ARGS...`: any dbt command; 1 when dbt reports a failure."""
    outcome = project.invoke(*args.args, check=False)
    return 0 if outcome.success else 1


Command = Callable[[Database, DbtProject, argparse.Namespace], int]
"""A command's handler: (the open database, its dbt project, the parsed args) -> exit code."""

COMMANDS: dict[str, Command] = {
    "demo": _demo,
    "build": _build,
    "sample": _sample,
    "show": _show,
    "load": _load,
    "bench": _bench,
    "view-sql": _view_sql,
    "dbt": _dbt,
}
"""Every subcommand but `test` (which runs before any database opens), by name."""


if __name__ == "__main__":
    raise SystemExit(main())
