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

`buildqueue.perf.loader.load_fleet` writes it into a database.
"""

from __future__ import annotations

import csv
import hashlib
import random
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO

from buildqueue.paths import PROJECT_DIR
from buildqueue.perf.catalog import CRYSTAL_FORGE_TABLES

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


__all__ = ["COLUMNS", "FleetShape", "generate", "status_ids"]
