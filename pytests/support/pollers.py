"""Grafana-like readers: a step looped in a thread of its own while a block runs."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def looping(connect: Callable[[], psycopg.Connection], step: Callable) -> Iterator[list]:
    """``step(conn)`` in a thread until the block ends; yields its results or errors."""
    results: list = []
    stop = threading.Event()

    def loop() -> None:
        with connect() as conn:
            while not stop.wait(0.02):
                try:
                    results.append(step(conn))
                except psycopg.Error as error:
                    results.append(f"error: {error}")

    (thread := threading.Thread(target=loop)).start()
    try:
        yield results
    finally:
        stop.set()
        thread.join()
