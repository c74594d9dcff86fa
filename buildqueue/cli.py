"""The `buildqueue` command: the demo (main job), builds and the test suite.

    buildqueue demo [--watch N]    start the database, load the example, build, print the view
    buildqueue build [--fixtures]  dbt build (models, data tests, unit tests)
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
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from buildqueue.database import Database, DatabaseError, open_database
from buildqueue.dbt import DbtError, DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.report import fetch_rows, print_rows
from buildqueue.sampler import SAMPLE_MODEL, SampleError, check_every, sample_every, take_sample


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
    load = sub.add_parser("load", parents=[common], help="Grafana viewer capacity (pgbench)")
    load.add_argument("sizes", nargs="*", help="fleets (default: 1000x1000 3000x1000)")
    load.add_argument("--refresh", type=float, nargs="+", default=[1.0, 5.0], help="R s (1 5)")
    load.add_argument("--seconds", type=int, default=20, help="pgbench run per viewer count")
    load.add_argument("--limit", type=float, default=1.0, help="latency limit s (1)")
    load.add_argument("--max-viewers", type=int, default=256, help="search cap (256)")
    load.add_argument("--seed", type=int, default=1, help="fleet generator seed")
    sub.add_parser("test", help="run the whole test suite (arguments go to pytest)")
    bench = sub.add_parser("bench", parents=[common], help="query shapes on synthetic fleets")
    bench.add_argument(
        "sizes", nargs="*", help="e.g. 1000x1000 1000x1000+h10 (default: 1000x1000 3000x1000)"
    )
    bench.add_argument("--runs", type=int, default=5, help="timed runs per query (median)")
    bench.add_argument("--seed", type=int, default=1, help="fleet generator seed")
    return parser


def show_view(db: Database, schema: str, watch: float | None) -> None:
    """Print the view once, or every `watch` seconds until Ctrl-C."""
    with db.connect() as conn:
        if not watch:
            print_rows(fetch_rows(conn, schema))
            return
        if watch <= 0:
            raise SystemExit("error: --watch needs a positive number of seconds")
        try:
            while True:
                rows = fetch_rows(conn, schema)
                sys.stdout.write("\033[2J\033[H" if sys.stdout.isatty() else "\n")
                print(
                    f"view_build_queue_status at {time.strftime('%H:%M:%S')} "
                    f"(every {watch:g}s, Ctrl-C to stop)"
                )
                print_rows(rows)
                time.sleep(watch)
        except KeyboardInterrupt:
            print("\nstopped.")


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


def sample_queue(project: DbtProject, every: float | None, vars_text: str | None) -> int:
    """`buildqueue sample`: one sample, or one every `every` seconds until Ctrl-C."""
    vars = _parse_vars(vars_text)
    if every is None:
        print(take_sample(project, vars).describe())
        return 0
    check_every(every)  # before the "sampling ..." line
    print(
        f"sampling {project.view_schema()}.{SAMPLE_MODEL} every {every:g}s (Ctrl-C to stop)",
        file=sys.stderr,
    )
    try:
        sample_every(project, every, vars)
    except KeyboardInterrupt:
        print("\nstopped.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `buildqueue` command; its exit code (1 on an error, 130 on Ctrl-C)."""
    # Ctrl-C must stop every command (the watch loop prints "stopped.", the others
    # "interrupted.") even when we were started with SIGINT ignored: a shell without job
    # control ignores it in background jobs and children inherit that, and Python only
    # turns SIGINT into KeyboardInterrupt when it finds SIG_DFL.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["test"]:
        # everything after `test` goes to pytest untouched (argparse would eat -q, -k ...)
        return run_test_suite(argv[1:])
    return run_command(_parser().parse_args(argv))


def run_test_suite(pytest_args: Sequence[str]) -> int:
    """`buildqueue test`: the whole pytest suite (dbt build runs inside it); pytest's code."""
    import pytest

    from buildqueue.docker_engine import prepare_for_tests

    prepare_for_tests()  # Docker + the PostgreSQL 15 image for the container tests
    config = PROJECT_DIR / "pyproject.toml"
    return int(pytest.main(["-c", str(config), "--rootdir", str(PROJECT_DIR), *pytest_args]))


def run_command(args: argparse.Namespace) -> int:
    """Open the database, run the command's handler, stop the database whatever happens.

    A known error prints one "error: ..." line and returns 1; Ctrl-C outside the watch
    loops prints "interrupted." and returns 130, without a traceback.
    """
    db: Database | None = None
    try:
        db = open_database(args.database)
        project = DbtProject(db, target=args.target, quiet=args.command != "dbt")
        return COMMANDS[args.command](db, project, args)
    except (DatabaseError, DbtError, SampleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C outside the watch loop (which stops with "stopped." and 0): no traceback.
        print("\ninterrupted.", file=sys.stderr)
        return 130
    finally:
        if db is not None:
            db.stop()


def _demo(db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue demo`: build over the example fixtures, then print (or watch) the view."""
    print(f"database: {db.describe()}", file=sys.stderr)
    project.build(fixtures=True)
    show_view(db, project.view_schema(), args.watch)
    return 0


def _build(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue build`: dbt build, with the example fixtures on --fixtures."""
    print(project.build(fixtures=args.fixtures).describe())
    return 0


def _sample(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue sample`: one queue sample, or one every --every seconds."""
    return sample_queue(project, args.every, args.vars)


def _show(db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue show`: print (or watch) the view as it is, without building."""
    show_view(db, project.view_schema(), args.watch)
    return 0


def _load(db: Database, _project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue load`: the Grafana viewer capacity table (pgbench)."""
    from buildqueue.perf.capacity import load_command

    return load_command(db, args)


def _bench(db: Database, _project: DbtProject, args: argparse.Namespace) -> int:
    """`buildqueue bench`: time the view on synthetic fleets (the performance lab)."""
    from buildqueue.perf.bench import bench_command

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
