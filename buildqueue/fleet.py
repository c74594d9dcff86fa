"""A synthetic Crystal Forge fleet, deterministic for a seed, for benchmarks and smoke tests.

`FleetShape(systems=S, packages=P, history=H, seed=N)` describes the fleet:

* S **queued** NixOS systems (status dry-run-complete or scheduled), plus one system in
  twenty in another state (dry-run running or failed, build failed, already pushed), so
  the queue filter has something to filter. Host ``h`` belongs to flake ``h % flakes``
  and is evaluated at one of its flake's recent commits.
* about P package dependencies per system: 80 % sampled from the pool of packages its
  commit shares with the other systems of the flake (the pool changes by 15 % from one
  commit to the next, and part of it is common to every flake), 20 % the system's own.
  Packages are shared derivations (``commit_id`` NULL), as in Crystal Forge.
* package statuses spread across every state: the newer the commit, the less is built;
  the systems of each flake's oldest recent commit are completely built (ready), some
  fully pushed, some waiting for the cache.
* H finished evaluations (status cache-pushed or build-complete) per queued host at older
  commits: the history that accumulates in a long-running deployment.
* one reservation for most building packages, on the system that first depends on it,
  held by ``max(3, S // 5)`` workers (several reservations each); some workers' heartbeats
  are stale (always at least one). Some ready systems have their system build reserved.
* a few dependencies that the view must ignore: on another NixOS system, on a missing row.

`load_fleet` writes it through ``COPY`` into a scratch schema whose tables come from the
dbt macro ``create_crystal_forge_tables`` (the one definition of their shape). The
secondary indexes are dropped before the load and built afterwards by the dbt operation
``create_source_indexes``; then ``vacuum analyze`` (as autovacuum would on a live database).
Reservation times are relative to the ``now`` passed in (default: load time).
"""

from __future__ import annotations

import csv
import hashlib
import random
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO

import psycopg
from psycopg import sql

from buildqueue.dbt import DbtProject
from buildqueue.example import CRYSTAL_FORGE_TABLES
from buildqueue.paths import PROJECT_DIR

STATUS_CATALOGUE = PROJECT_DIR / "seeds" / "example" / "fixture_derivation_statuses.csv"
"""The status catalogue (id, name, ...): the same rows as the example fixtures."""

TABLES = CRYSTAL_FORGE_TABLES
"""Load order (the fleets' tables have no foreign keys; this order would allow them)."""

RECENT_COMMIT_PROGRESS = (0.35, 0.7, 0.95, 1.0)
"""Share of new packages already built, per recent commit, newest first."""

COMMON_SHARE = 0.8
CHURN = 0.15
SHARED_ACROSS_FLAKES = 0.4
OTHER_STATE_SYSTEMS = 0.05
STALE_WORKERS = 0.15
RESERVED_SHARE = 0.9


@dataclass(frozen=True)
class FleetShape:
    """The size of a synthetic fleet; the same shape and seed give the same rows."""

    systems: int
    packages: int
    history: int = 0
    seed: int = 1
    flakes: int = 4

    @property
    def label(self) -> str:
        text = f"{self.systems}x{self.packages}"
        return text + (f"+h{self.history}" if self.history else "")


@dataclass
class FleetStats:
    """Row counts and timings of one load."""

    rows: dict[str, int] = field(default_factory=dict)
    generate_seconds: float = 0.0
    load_seconds: float = 0.0
    index_seconds: float = 0.0
    total_seconds: float = 0.0

    def describe(self) -> str:
        counts = ", ".join(f"{table} {count:,}" for table, count in self.rows.items())
        return (
            f"{counts}; generated in {self.generate_seconds:.1f}s, copied in "
            f"{self.load_seconds:.1f}s, indexed+analyzed in {self.index_seconds:.1f}s "
            f"(total {self.total_seconds:.1f}s)"
        )


def status_ids() -> dict[str, int]:
    """Status name -> id, from the catalogue the example fixtures also use."""
    with STATUS_CATALOGUE.open(newline="") as handle:
        return {row["name"]: int(row["id"]) for row in csv.DictReader(handle)}


class _Tables:
    """One spooled COPY-text file per table, written row by row."""

    def __init__(self) -> None:
        # closed by close(): the files outlive this call, they are read back by COPY
        self.files: dict[str, IO[str]] = {
            table: tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
            for table in TABLES
        }
        self.rows = dict.fromkeys(TABLES, 0)

    def write(self, table: str, *values: object) -> None:
        self.files[table].write(
            "\t".join("\\N" if value is None else str(value) for value in values) + "\n"
        )
        self.rows[table] += 1

    def write_lines(self, table: str, text: str, count: int) -> None:
        self.files[table].write(text)
        self.rows[table] += count

    def chunks(self, table: str) -> Iterator[str]:
        handle = self.files[table]
        handle.seek(0)
        while chunk := handle.read(1 << 20):
            yield chunk

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


COLUMNS = {
    "derivation_statuses": (
        "id",
        "name",
        "description",
        "is_terminal",
        "is_success",
        "display_order",
    ),
    "commits": ("id", "flake_id", "git_commit_hash", "commit_timestamp"),
    "derivations": (
        "id",
        "commit_id",
        "derivation_type",
        "derivation_name",
        "derivation_path",
        "status_id",
        "pname",
        "version",
    ),
    "derivation_dependencies": ("derivation_id", "depends_on_id"),
    "build_reservations": (
        "id",
        "worker_id",
        "derivation_id",
        "nixos_derivation_id",
        "reserved_at",
        "heartbeat_at",
    ),
}
"""The columns each COPY fills (the rest take their defaults)."""


class _Generator:
    """Writes the fleet's rows in id order (oldest commit first), streaming to files."""

    def __init__(self, shape: FleetShape, now: datetime, out: _Tables) -> None:
        self.shape = shape
        self.now = now
        self.out = out
        self.rng = random.Random(shape.seed)
        self.status = status_ids()
        self.next_id = 1
        # status of every derivation by id (index 0 unused): compact, fleets are large
        self.status_of = array("B", [0])
        self.reserved: set[int] = set()
        self.reservations: list[tuple[int, int | None]] = []  # (derivation_id, nixos_id)
        self.flakes = max(1, min(shape.flakes, shape.systems))

    # -- derivations -----------------------------------------------------------------

    def _derivation(self, kind: str, name: str, status: int, commit_id: int | None) -> int:
        derivation_id = self.next_id
        self.next_id += 1
        digest = f"{(derivation_id * 0x9E3779B97F4A7C15) % (1 << 128):032x}"
        pname, version = (name, "1.0") if kind == "package" else (None, None)
        self.out.write(
            "derivations",
            derivation_id,
            commit_id,
            kind,
            name,
            f"/nix/store/{digest}-{name}.drv",
            status,
            pname,
            version,
        )
        self.status_of.append(status)
        return derivation_id

    def _package_status(self, progress: float) -> int:
        s, rng = self.status, self.rng
        if rng.random() < progress:
            return s["cache-pushed"] if rng.random() < 0.65 else s["build-complete"]
        roll = rng.random()
        for name, share in (
            ("build-inprogress", 0.12),
            ("build-failed", 0.05),
            ("cache-push-failed", 0.03),
            ("build-pending", 0.40),
            ("dry-run-complete", 0.30),
        ):
            if roll < share:
                return s[name]
            roll -= share
        return s["pending"]

    def _new_packages(self, count: int, progress: float) -> list[int]:
        return [
            self._derivation("package", f"pkg{self.next_id}", self._package_status(progress), None)
            for _ in range(count)
        ]

    # -- commits and systems ---------------------------------------------------------

    def _commit(self, commit_id: int, flake: int, age: timedelta) -> None:
        digest = hashlib.sha1(f"{self.shape.seed}:{commit_id}".encode()).hexdigest()
        self.out.write("commits", commit_id, flake + 1, digest, (self.now - age).isoformat())

    def _system(
        self, host: str, status: int, commit_id: int, pool: list[int], progress: float
    ) -> int:
        """A system evaluation: its row, its own packages and its dependency rows."""
        shape, rng = self.shape, self.rng
        system_id = self._derivation("nixos", host, status, commit_id)
        common = min(len(pool), round(shape.packages * COMMON_SHARE))
        own = self._new_packages(shape.packages - common, progress)
        depends_on = rng.sample(pool, common) + own
        queued = status in (self.status["dry-run-complete"], self.status["scheduled"])
        if queued:
            building = self.status["build-inprogress"]
            for package_id in depends_on:
                if self.status_of[package_id] == building and package_id not in self.reserved:
                    self.reserved.add(package_id)
                    if rng.random() < RESERVED_SHARE:
                        self.reservations.append((package_id, system_id))
            done = {self.status["build-complete"], self.status["cache-pushed"]}
            if all(self.status_of[p] in done for p in depends_on):
                roll = rng.random()
                if roll < 0.3:
                    self.reservations.append((system_id, None))  # the system build
                elif roll < 0.35:
                    self.reservations.append((system_id, system_id))  # matches both ways
            if rng.random() < 0.01 and system_id > 1:
                depends_on.append(rng.randrange(1, system_id))  # may be a system: ignored
            if rng.random() < 0.005:
                depends_on.append(0)  # a dependency on a missing row: ignored
        lines = "".join(f"{system_id}\t{package_id}\n" for package_id in sorted(set(depends_on)))
        self.out.write_lines("derivation_dependencies", lines, len(set(depends_on)))
        return system_id

    def run(self) -> None:
        shape, rng, s = self.shape, self.rng, self.status
        for row in _catalogue_rows():
            self.out.write("derivation_statuses", *row)
        recent = len(RECENT_COMMIT_PROGRESS)
        # commits: per flake `history` old ones then `recent` ones; ids and rows in time order
        schedule = []  # (age, flake, index) oldest first; index < history means finished
        for flake in range(self.flakes):
            for index in range(shape.history + recent):
                steps = shape.history + recent - 1 - index
                age = timedelta(hours=6 * steps, minutes=17 * flake)
                schedule.append((age, flake, index))
        schedule.sort(key=lambda item: (-item[0], item[1]))
        hosts = shape.systems + round(shape.systems * OTHER_STATE_SYSTEMS)
        other_states = [
            s[name]
            for name in ("dry-run-inprogress", "dry-run-failed", "build-failed", "cache-pushed")
        ]
        queued_states = [s["dry-run-complete"], s["scheduled"]]
        # each host's recent commit (0 = newest)
        evaluated_at = [rng.randrange(recent) for _ in range(hosts)]
        base = self._new_packages(round(shape.packages * SHARED_ACROSS_FLAKES), 1.0)
        pools = [
            base + self._new_packages(shape.packages - len(base), 1.0) for _ in range(self.flakes)
        ]
        for commit_id, (age, flake, index) in enumerate(schedule, start=1):
            self._commit(commit_id, flake, age)
            finished = index < shape.history
            newness = shape.history + recent - 1 - index  # 0 = the flake's newest commit
            progress = 1.0 if finished else RECENT_COMMIT_PROGRESS[newness]
            pool = pools[flake]
            churned = rng.sample(range(len(pool)), round(len(pool) * CHURN))
            for position, package_id in zip(
                churned, self._new_packages(len(churned), progress), strict=True
            ):
                pool[position] = package_id
            for host in range(flake, hosts, self.flakes):
                name = f"host-{flake + 1}-{host // self.flakes:04d}"
                if finished:
                    status = s["cache-pushed"] if rng.random() < 0.9 else s["build-complete"]
                elif evaluated_at[host] == newness:
                    queued = host < shape.systems
                    status = rng.choice(queued_states if queued else other_states)
                else:
                    continue
                self._system(name, status, commit_id, pool, progress)
        self._write_reservations(max(3, shape.systems // 5))

    def _write_reservations(self, workers: int) -> None:
        rng = self.rng
        # the last worker is always stale, so even a tiny fleet has a stale system
        ages = [
            rng.uniform(360, 3600)
            if rng.random() < STALE_WORKERS or worker == workers - 1
            else rng.uniform(0, 90)
            for worker in range(workers)
        ]
        for reservation_id, (derivation_id, nixos_id) in enumerate(self.reservations, start=1):
            worker = rng.randrange(workers)
            heartbeat = ages[worker] + rng.uniform(0, 20)
            reserved = heartbeat + rng.uniform(60, 4 * 3600)
            self.out.write(
                "build_reservations",
                reservation_id,
                f"worker-{worker:04d}",
                derivation_id,
                nixos_id,
                (self.now - timedelta(seconds=reserved)).isoformat(),
                (self.now - timedelta(seconds=heartbeat)).isoformat(),
            )


def _catalogue_rows() -> list[tuple[str, ...]]:
    with STATUS_CATALOGUE.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [tuple(row) for row in reader]


def generate(shape: FleetShape, now: datetime | None = None) -> _Tables:
    """The fleet's rows as COPY text, one spooled file per table (caller closes)."""
    out = _Tables()
    _Generator(shape, now or datetime.now(UTC), out).run()
    return out


def load_fleet(
    project: DbtProject,
    conn: psycopg.Connection,
    schema: str,
    shape: FleetShape,
    now: datetime | None = None,
) -> FleetStats:
    """Replace ``schema`` with the fleet: tables from the dbt macro, COPY, indexes, analyze.

    ``conn`` must be an autocommit connection to ``project``'s database.
    """
    stats = FleetStats()
    started = time.perf_counter()
    tables = generate(shape, now)
    stats.rows = dict(tables.rows)
    stats.generate_seconds = time.perf_counter() - started
    try:
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
        project.invoke(
            "run-operation", "create_crystal_forge_tables", "--args", f"{{schema: {schema}}}"
        )
        # the secondary indexes are built after the load: much faster than maintaining them
        dropped = drop_secondary_indexes(conn, schema)
        copied = time.perf_counter()
        with conn.transaction():
            for table in TABLES:
                _copy(conn, schema, table, tables.chunks(table))
            for table in ("commits", "derivations", "build_reservations"):
                conn.execute(
                    sql.SQL(
                        "select setval(pg_get_serial_sequence({}, 'id'), "
                        "greatest((select max(id) from {}), 1))"
                    ).format(
                        sql.Literal(f"{schema}.{table}"),
                        sql.Identifier(schema, table),
                    )
                )
        stats.load_seconds = time.perf_counter() - copied
    finally:
        tables.close()
    indexed = time.perf_counter()
    project.invoke("run-operation", "create_source_indexes", vars={"source_schema": schema})
    missing = dropped - set(secondary_indexes(conn, schema))
    if missing:
        raise RuntimeError(f"create_source_indexes did not rebuild {sorted(missing)}")
    for table in TABLES:
        conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(schema, table)))
    stats.index_seconds = time.perf_counter() - indexed
    stats.total_seconds = time.perf_counter() - started
    return stats


def _copy(conn: psycopg.Connection, schema: str, table: str, chunks: Iterator[str]) -> None:
    statement = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for chunk in chunks:
            copy.write(chunk)


def secondary_indexes(conn: psycopg.Connection, schema: str) -> list[str]:
    """Indexes in ``schema`` that back no constraint (the source_indexes() ones)."""
    rows = conn.execute(
        """
        select index_class.relname
        from pg_index
        join pg_class as index_class on index_class.oid = pg_index.indexrelid
        join pg_namespace on pg_namespace.oid = index_class.relnamespace
        where pg_namespace.nspname = %s
            and not exists (select from pg_constraint where conindid = pg_index.indexrelid)
        order by 1
        """,
        [schema],
    ).fetchall()
    return [row[0] for row in rows]


def drop_secondary_indexes(conn: psycopg.Connection, schema: str) -> set[str]:
    """Drop the indexes `secondary_indexes` lists; their names."""
    names = secondary_indexes(conn, schema)
    for name in names:
        conn.execute(sql.SQL("drop index {}").format(sql.Identifier(schema, name)))
    return set(names)


def describe_indexes(conn: psycopg.Connection, schema: str) -> list[str]:
    """Every index and extended statistic on the fleet's tables, one line each."""
    indexes = conn.execute(
        "select indexname, indexdef from pg_indexes where schemaname = %s order by 1",
        [schema],
    ).fetchall()
    statistics = conn.execute(
        """
        select stxname, pg_get_statisticsobjdef(oid)
        from pg_statistic_ext
        where stxnamespace = to_regnamespace(%s)
        order by 1
        """,
        [schema],
    ).fetchall()
    lines = [f"{name}: {definition.split(' ON ', 1)[-1]}" for name, definition in indexes]
    lines += [
        f"{name}: statistics {definition.split(' ', 2)[-1]}" for name, definition in statistics
    ]
    return lines


__all__ = ["FleetShape", "FleetStats", "describe_indexes", "generate", "load_fleet"]
