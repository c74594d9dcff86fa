"""The `buildqueue` command (`./run`) around the dbt project and the performance lab; `show
--watch` and `sample --every` retry a lost server with backoff."""

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from unicodedata import category

import yaml

from buildqueue import database
from buildqueue.database import ConnectionFailed, Database, DatabaseError
from buildqueue.dbt import SCHEMA_ENV, DbtError, DbtProject
from buildqueue.paths import PROJECT_DIR
from buildqueue.report import fetch_rows, print_rows
from buildqueue.sampler import SAMPLE_MODEL, SampleError, take_sample
from buildqueue.view_sql import view_sql

OPTIONS: dict[str, dict[str, Any]] = {
    "watch": {"type": float, "metavar": "N", "help": "refresh every N seconds"},
    "every": {"type": float, "metavar": "N", "help": "sample every N seconds"},
    "fixtures": {"action": "store_true", "help": "load the example fixtures"},
    "vars": {"help": "dbt vars as YAML, e.g. '{source_schema: public}'"},
}
COMMAND_HELP = {
    "demo": ("build the view over the example", "watch"),
    "show": ("print the view", "watch"),
    "build": ("dbt build", "fixtures vars"),
    "view-sql": ("the view's create statement", "vars"),
    "sample": ("add a queue history sample", "every vars"),
    "dbt": ("any dbt command", ""),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildqueue", description=__doc__.split(";")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database", help="embedded (default), env, testcontainers or a DSN")
    common.add_argument("--target", default="dev", help="dbt target: dev (default), ci or prod")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, options) in COMMAND_HELP.items():
        command = sub.add_parser(name, parents=[common], help=text)
        for option in options.split():
            command.add_argument(f"--{option}", **OPTIONS[option])
    sub.choices["dbt"].add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("test", help="run the test suite (arguments go to pytest)")
    load = sub.add_parser("load", parents=[common], help="Grafana viewer capacity (pgbench)")
    load.add_argument("sizes", nargs="*", help="fleets (default: 1000x1000 3000x1000)")
    load.add_argument("--refresh", type=float, nargs="+", default=[1.0, 5.0], help="R s (1 5)")
    load.add_argument("--seconds", type=int, default=20, help="pgbench run per viewer count")
    load.add_argument("--limit", type=float, default=1.0, help="latency limit s (1)")
    load.add_argument("--max-viewers", type=int, default=256, help="search cap (256)")
    load.add_argument("--seed", type=int, default=1, help="fleet generator seed")
    bench = sub.add_parser("bench", parents=[common], help="query shapes on synthetic fleets")
    bench.add_argument("sizes", nargs="*", help="e.g. 1000x1000 (default: 1000x1000 3000x1000)")
    bench.add_argument("--runs", type=int, default=5, help="timed runs per query (median)")
    bench.add_argument("--seed", type=int, default=1, help="fleet generator seed")
    return parser


def _positive(seconds: float, option: str) -> float:
    if seconds <= 0:
        raise DatabaseError(f"{option} needs a positive number of seconds, e.g. {option} 5")
    return seconds


def every(seconds: float, step: Callable[[], None], what: str) -> None:
    """``step`` every ``seconds`` on a fixed grid; a lost database: one line, retry later."""
    start, backoff = time.monotonic(), 1.0
    while True:
        try:
            step()
            backoff, slot = 1.0, int((time.monotonic() - start) // seconds) + 1
            pause = start + slot * seconds - time.monotonic()
        except ConnectionFailed as error:
            print(f"{what}: {error}; retrying in {backoff:g}s", file=sys.stderr, flush=True)
            pause, backoff = backoff, min(backoff * 2, 30.0)
        time.sleep(max(0.0, pause))


def show_view(db: Database, schema: str, watch: float | None, target: str = "dev") -> None:
    """Print the view once, or every ``watch`` seconds until Ctrl-C."""
    if watch is None:
        with db.connect() as conn:
            return print_rows(fetch_rows(conn, schema, target))
    text = os.environ.get("BUILDQUEUE_TIMEOUT", "30")  # how long one refresh may take
    if not re.fullmatch(r"\d{1,5}(\.\d+)?", text) or float(text) <= 0:
        raise DatabaseError(
            f"BUILDQUEUE_TIMEOUT={text!r} is not seconds. Fix: e.g. 30, or unset it."
        )
    timeout, held = float(text), []
    options = f"-c statement_timeout={int(timeout * 1000)}"

    def refresh() -> None:
        if not held:
            held.append(db.connect(options=options, application_name="buildqueue show"))
        try:
            with database.deadline(held[0], timeout + 5):  # a frozen server: cut, not a hang
                rows = fetch_rows(held[0], schema, target)
        except ConnectionFailed:
            held.pop().close()
            raise
        sys.stdout.write("\033[2J\033[H" if sys.stdout.isatty() else "\n")
        print(f"view_build_queue_status at {time.strftime('%H:%M:%S')} (every {watch:g}s, "
              "Ctrl-C to stop)")  # fmt: skip
        print_rows(rows)

    every(_positive(watch, "--watch"), refresh, "show")


def _parse_vars(text: str | None) -> dict[str, Any] | None:
    """--vars as dbt reads it (a YAML mapping); one line with the fix otherwise."""
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        value = text
    if value is not None and not isinstance(value, dict):
        raise DbtError(f"--vars must be a YAML mapping, got {text!r}. Fix: --vars '{{a: b}}'.")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `buildqueue` command; its exit code (1 on an error, 130 on Ctrl-C)."""
    # SIGINT may come ignored (a shell's background job): Python needs its own handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: the server stops
    argv = list(sys.argv[1:] if argv is None else argv)
    # dbt records sys.argv in target/run_results.json: no password there
    # (a conninfo value may be quoted and hold spaces: 'pa ss')
    redact = [
        (r"(://[^:/@]*:)[^@]*@", r"\1***@"),
        (r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", r"\1***"),
    ]
    for pattern, replacement in redact:
        sys.argv = [re.sub(pattern, replacement, arg) for arg in sys.argv]
    if argv[:1] == ["test"]:  # the rest goes to pytest untouched
        import pytest

        config = ["-c", str(PROJECT_DIR / "pyproject.toml"), "--rootdir", str(PROJECT_DIR)]
        return int(pytest.main([*config, *argv[1:]]))
    return run_command(_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run the command, always stop the database; "error: ..." exits 1, Ctrl-C 130."""
    db: Database | None = None
    try:
        name = os.environ.get(SCHEMA_ENV, "x")  # used double-quoted, case kept, as by dbt
        if not 0 < len(name.encode()) <= 63 or "Cc" in map(category, name):
            raise DatabaseError(
                f"{SCHEMA_ENV}={name!r} is not a PostgreSQL name. Fix: set {SCHEMA_ENV} to 1 to "
                "63 bytes without control characters (it is used double-quoted, case preserved)."
            )
        db = database.open_database(args.database)
        project = DbtProject(db, target=args.target, quiet=args.command != "dbt")
        return COMMANDS[args.command](db, project, args) or 0
    except (DatabaseError, DbtError, SampleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted.", file=sys.stderr)
        return 130
    finally:
        if db is not None:
            db.stop()


def _demo(db: Database, project: DbtProject, args: argparse.Namespace) -> None:
    print(f"database: {db.describe()}", file=sys.stderr)
    project.build(fixtures=True)
    show_view(db, project.view_schema(), args.watch, project.target)


def _sample(_db: Database, project: DbtProject, args: argparse.Namespace) -> None:
    vars = _parse_vars(args.vars)
    if args.every is None:
        return print(take_sample(project, vars).describe())
    _positive(args.every, "--every")
    where = f"{project.view_schema()}.{SAMPLE_MODEL}"
    print(f"sampling {where} every {args.every:g}s (Ctrl-C to stop)", file=sys.stderr)
    every(args.every, lambda: print(take_sample(project, vars).describe(), flush=True), "sample")


def _dbt(db: Database, project: DbtProject, args: argparse.Namespace) -> int:
    """Any dbt command; on a failure over the example's unloaded tables, say to load them."""
    if project.invoke(*args.args, check=False).success:
        return 0
    given = next((b for a, b in zip(args.args, args.args[1:], strict=False) if a == "--vars"), None)
    source = project.settings(_parse_vars(given))["source_schema"]
    with db.connect() as conn:
        found = conn.execute("select to_regnamespace(%s)", [source]).fetchone()
    if found == (None,) and source == project.settings()["source_schema"]:
        print(
            f"error: schema {source} (var source_schema) does not exist. Fix: load the "
            "example first (./run build --fixtures), or pass --vars '{source_schema: ...}'.",
            file=sys.stderr,
        )
    return 1


def _load(db: Database, _project: DbtProject, args: argparse.Namespace) -> int:
    from buildqueue.perf.capacity import load_command

    return load_command(db, args)


def _bench(db: Database, _project: DbtProject, args: argparse.Namespace) -> int:
    from buildqueue.perf.bench import bench_command

    return bench_command(db, args)


COMMANDS: dict[str, Callable[[Database, DbtProject, argparse.Namespace], int | None]] = {
    "demo": _demo,
    "build": lambda _db, p, a: print(
        p.build(fixtures=a.fixtures, vars=_parse_vars(a.vars)).describe()
    ),
    "show": lambda db, p, a: show_view(db, p.view_schema(), a.watch, p.target),
    "sample": _sample,
    "view-sql": lambda _db, p, a: sys.stdout.write(view_sql(p, _parse_vars(a.vars))) and 0,
    "dbt": _dbt,
    "load": _load,
    "bench": _bench,
}
"""Every subcommand but `test` (which runs before any database opens), by name."""
