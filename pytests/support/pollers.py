"""Grafana-like readers of the view: a failure is recorded, never raised; then they reconnect."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from buildqueue.database import Database, DatabaseError
from buildqueue.report import view_query


@dataclass
class PollStats:
    errors: list[str] = field(default_factory=list)
    row_counts: Counter[int] = field(default_factory=Counter)  # queries per row count


class Pollers:
    """``count`` pollers of ``schema``'s view for the duration of a ``with`` block."""

    def __init__(self, db: Database, schema: str, count: int = 1, user: str = "") -> None:
        self.stats, self.stop, self._lock = PollStats(), threading.Event(), threading.Lock()
        self._poll = (db, view_query(schema), {"user": user} if user else {})
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        db, query, overrides = self._poll
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
