"""The `buildqueue` command (`./run`): demo, build, show, view-sql, sample, dbt, test, and
the performance lab's load and bench. Each takes --database (embedded | env |
testcontainers | DSN; default $BUILDQUEUE_DATABASE or embedded) and --target (dev | ci |
prod). `show --watch` and `sample --every` survive a restart of the server (one line,
then retries with backoff) and cut a query unanswered after $BUILDQUEUE_TIMEOUT s (30).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
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
from buildqueue.report import fetch_rows, print_rows
from buildqueue.sampler import SAMPLE_MODEL, SampleError, check_every, take_sample

SCHEMA_ENV = "BUILDQUEUE_SCHEMA"
MAX_BACKOFF_SECONDS = 30.0
VARS_HELP = "dbt vars as YAML, e.g. '{source_schema: public}'"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildqueue", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database", help="embedded (default), env, testcontainers or a DSN")
    common.add_argument("--target", default="dev", help="dbt target: dev (default), ci or prod")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [("demo", "build the view over the example"), ("show", "print the view")]:
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("--watch", type=float, metavar="N", help="refresh every N seconds")
    build = sub.add_parser("build", parents=[common], help="dbt build")
    build.add_argument("--fixtures", action="store_true", help="load the example fixtures")
    build.add_argument("--vars", help=VARS_HELP)
    view_sql = sub.add_parser("view-sql", parents=[common], help="the view's create statement")
    view_sql.add_argument("--vars", help=VARS_HELP)
    sample = sub.add_parser("sample", parents=[common], help="add a queue history sample")
    sample.add_argument("--every", type=float, metavar="N", help="sample every N seconds")
    sample.add_argument("--vars", help=VARS_HELP)
    dbt = sub.add_parser("dbt", parents=[common], help="any dbt command")
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


def every(seconds: float, step: Callable[[], None], what: str) -> None:
    """Call ``step`` every ``seconds`` on a fixed grid (no drift; an overrun skips slots)
    until Ctrl-C. A lost database prints one line; the step is retried with backoff."""
    if seconds <= 0:
        raise DatabaseError(f"{what}: the interval needs a positive number of seconds, e.g. 5")
    start, backoff = time.monotonic(), 1.0
    while True:
        try:
            step()
        except ConnectionFailed as error:
            print(f"{what}: {error}; retrying in {backoff:g}s", file=sys.stderr, flush=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        backoff = 1.0
        slot = int((time.monotonic() - start) // seconds) + 1
        time.sleep(max(0.0, start + slot * seconds - time.monotonic()))


def show_view(db: Database, schema: str, watch: float | None, target: str = "dev") -> None:
    """Print the view once, or every ``watch`` seconds until Ctrl-C."""
    if watch is None:
        with db.connect() as conn:
            return print_rows(fetch_rows(conn, schema, target))
    if watch <= 0:
        raise DatabaseError("--watch needs a positive number of seconds, e.g. --watch 5")
    timeout = timeout_seconds()
    options = f"-c statement_timeout={int(timeout * 1000)}"
    held: list[psycopg.Connection] = []

    def refresh() -> None:
        if not held:
            held.append(db.connect(options=options, application_name="buildqueue show"))
        try:
            with deadline(held[0], timeout + 5):  # a frozen server: cut, not a hang
                rows = fetch_rows(held[0], schema, target)
        except ConnectionFailed:
            held.pop().close()
            raise
        sys.stdout.write("\033[2J\033[H" if sys.stdout.isatty() else "\n")
        now = time.strftime("%H:%M:%S")
        print(f"view_build_queue_status at {now} (every {watch:g}s, Ctrl-C to stop)")
        print_rows(rows)

    every(watch, refresh, "show")


def _parse_vars(text: str | None) -> dict[str, Any] | None:
    """--vars as dbt reads it (a YAML mapping); one line with the fix otherwise."""
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        value = text
    if value is not None and not isinstance(value, dict):
        raise DbtError(f"--vars must be a YAML mapping, got {text!r}. Fix: --vars '{{a: b}}'.")
    return value


def _redacted(arg: str) -> str:  # dbt records sys.argv in target/run_results.json
    return re.sub(r"(password=)\S*", r"\1***", re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", arg))


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds like Ctrl-C: the embedded server stops


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `buildqueue` command; its exit code (1 on an error, 130 on Ctrl-C)."""
    # SIGINT may come ignored (a shell's background job): Python needs its own handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    argv = list(sys.argv[1:] if argv is None else argv)
    sys.argv = [_redacted(arg) for arg in sys.argv]
    if argv[:1] == ["test"]:  # the rest goes to pytest untouched
        import pytest

        config = ["-c", str(PROJECT_DIR / "pyproject.toml"), "--rootdir", str(PROJECT_DIR)]
        return int(pytest.main([*config, *argv[1:]]))
    return run_command(_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Open the database, run the command, stop the database whatever happens. A known
    error is one "error: ..." line (exit 1); Ctrl-C prints "interrupted." (exit 130)."""
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
    print(f"database: {db.describe()}", file=sys.stderr)
    project.build(fixtures=True)
    show_view(db, project.view_schema(), args.watch, project.target)
    return 0


def _build(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    print(project.build(fixtures=args.fixtures, vars=_parse_vars(args.vars)).describe())
    return 0


def _show(db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    show_view(db, project.view_schema(), args.watch, project.target)
    return 0


def _sample(_db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    vars = _parse_vars(args.vars)
    if args.every is None:
        print(take_sample(project, vars).describe())
        return 0
    check_every(args.every)
    where = f"{project.view_schema()}.{SAMPLE_MODEL}"
    print(f"sampling {where} every {args.every:g}s (Ctrl-C to stop)", file=sys.stderr)
    every(args.every, lambda: print(take_sample(project, vars).describe(), flush=True), "sample")
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
    from buildqueue.view_sql import view_sql

    sys.stdout.write(view_sql(project, _parse_vars(args.vars)))
    return 0


def _dbt(db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """Any dbt command; on a failure over the example's unloaded tables, say to load them."""
    if project.invoke(*args.args, check=False).success:
        return 0
    source = project.settings(_parse_vars(_option(args.args, "--vars")))["source_schema"]
    with db.connect() as conn:
        found = conn.execute("select to_regnamespace(%s)", [source]).fetchone()
    if found == (None,) and source == project.settings()["source_schema"]:
        print(
            f"error: schema {source} (var source_schema) does not exist. Fix: load the "
            "example first (./run build --fixtures), or pass --vars '{source_schema: ...}'.",
            file=sys.stderr,
        )
    return 1


def _option(args: list[str], name: str) -> str | None:
    return next((args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name), None)


COMMANDS: dict[str, Callable[[Database, DbtProject, argparse.Namespace], int]] = {
    "demo": _demo,
    "build": _build,
    "show": _show,
    "sample": _sample,
    "view-sql": _view_sql,
    "dbt": _dbt,
    "load": _load,
    "bench": _bench,
}
"""Every subcommand but `test` (which runs before any database opens), by name."""
