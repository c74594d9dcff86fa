"""Reading PostgreSQL plans (``explain (analyze, format json)``): parallelism, and how many
times the view's aggregations ran (`./run bench` and pytests/test_perf.py read them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

Plan = dict[str, Any]
AGGREGATED_TABLES = {"derivation_dependencies", "build_reservations"}
"""What the view aggregates per system: package dependencies, reservations."""


def explain(conn: psycopg.Connection, query: str) -> Plan:
    """The top node of ``query``'s plan, run (``analyze``) once."""
    row = conn.execute(f"explain (analyze, format json) {query}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0][0]["Plan"]


def nodes(plan: Plan) -> Iterator[Plan]:
    """Every node of the plan, parents before their children."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def is_parallel(plan: Plan) -> bool:
    """Whether parallel workers ran."""
    return any(node.get("Workers Launched", 0) for node in nodes(plan))


def aggregation_runs(plan: Plan) -> int:
    """The most times an aggregate over dependencies or reservations ran (loops), 0 if never.

    Run without parallel workers, so one execution is one loop."""
    return max(
        (
            node.get("Actual Loops", 0)
            for node in nodes(plan)
            if node["Node Type"] == "Aggregate"
            and any(n.get("Relation Name") in AGGREGATED_TABLES for n in nodes(node))
        ),
        default=0,
    )
