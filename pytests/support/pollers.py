"""Pollers of the view: `poll_view` is one Grafana-like client (its own connection, one
short autocommit transaction per query, every row fetched). The redeploy and replica tests
run them while dbt rebuilds the view.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from buildqueue.database import Database, DatabaseError
from buildqueue.report import view_query


@dataclass
class PollStats:
    """What one or more pollers saw: latencies (s), row counts per query, errors."""

    latencies: list[float] = field(default_factory=list)
    row_counts: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    system_names: Counter[frozenset[str]] = field(default_factory=Counter)

    @property
    def queries(self) -> int:
        return len(self.latencies) + len(self.errors)

    def merge(self, other: PollStats) -> None:
        self.latencies += other.latencies
        self.row_counts.update(other.row_counts)
        self.errors += other.errors
        self.system_names.update(other.system_names)


def poll_view(
    db: Database,
    schema: str,
    stop: threading.Event,
    *,
    interval: float = 0.0,
    user: str | None = None,
    track_names: bool = False,
) -> PollStats:
    """Query the view until ``stop`` is set; each query is its own transaction.

    A failed query is recorded (never raised) and the poller reconnects, as Grafana does.
    """
    stats = PollStats()
    query = view_query(schema)
    overrides = {"user": user} if user else {}
    conn: psycopg.Connection | None = None
    try:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                if conn is None or conn.closed:
                    conn = db.connect(autocommit=True, **overrides)
                rows = conn.execute(query).fetchall()
            except (psycopg.Error, DatabaseError) as error:
                stats.errors.append(f"{type(error).__name__}: {error}".strip())
                if conn is not None and conn.broken:
                    conn = None
            else:
                stats.latencies.append(time.perf_counter() - started)
                stats.row_counts[len(rows)] += 1
                if track_names:
                    stats.system_names[frozenset(row[1] for row in rows)] += 1
            if interval:
                stop.wait(interval)
    finally:
        if conn is not None:
            conn.close()
    return stats


class Pollers:
    """Run ``count`` pollers in threads for the duration of a ``with`` block."""

    def __init__(self, db: Database, schema: str, count: int = 1, **poll_options: object) -> None:
        self.stop = threading.Event()
        self.stats = PollStats()
        self._results: list[PollStats] = []
        self._threads = [
            threading.Thread(
                target=lambda: self._results.append(
                    poll_view(db, schema, self.stop, **poll_options)  # type: ignore[arg-type]
                ),
                daemon=True,
            )
            for _ in range(count)
        ]
        self.seconds = 0.0

    def __enter__(self) -> Pollers:
        self._started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()
        self.seconds = time.perf_counter() - self._started
        for result in self._results:
            self.stats.merge(result)
