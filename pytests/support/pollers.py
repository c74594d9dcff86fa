"""Grafana-like readers polling the view while dbt rebuilds it: one autocommit query at a
time each; a failure is recorded, never raised, and the poller reconnects as Grafana does."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from buildqueue.database import Database, DatabaseError
from buildqueue.report import view_query


@dataclass
class PollStats:
    """What the pollers saw: errors, row counts per query, the sets of system names."""

    errors: list[str] = field(default_factory=list)
    row_counts: Counter[int] = field(default_factory=Counter)
    system_names: Counter[frozenset[str]] = field(default_factory=Counter)

    @property
    def queries(self) -> int:
        return len(self.errors) + sum(self.row_counts.values())


class Pollers:
    """``count`` pollers of ``schema``'s view in threads for the duration of a ``with`` block."""

    def __init__(self, db: Database, schema: str, count: int = 1, *, interval: float = 0.0,
                 user: str | None = None, track_names: bool = False) -> None:  # fmt: skip
        self.stats, self.stop, self._lock = PollStats(), threading.Event(), threading.Lock()
        self._poll = (db, view_query(schema), interval, {"user": user} if user else {})
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        self.track_names = track_names

    def _run(self) -> None:
        db, query, interval, overrides = self._poll
        conn: psycopg.Connection | None = None
        while not self.stop.is_set():
            try:
                conn = conn if conn and not conn.closed else db.connect(**overrides)
                rows = conn.execute(query).fetchall()
            except (psycopg.Error, DatabaseError) as error:
                with self._lock:
                    self.stats.errors.append(f"{type(error).__name__}: {error}".strip())
                conn = None if conn is not None and conn.broken else conn
            else:
                with self._lock:
                    self.stats.row_counts[len(rows)] += 1
                    if self.track_names:
                        self.stats.system_names[frozenset(row[1] for row in rows)] += 1
            self.stop.wait(interval)
        if conn is not None:
            conn.close()

    def __enter__(self) -> Pollers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()
