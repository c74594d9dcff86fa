"""Reading the view's PostgreSQL plans (``explain (format json)``).

The view is fast because of two planner decisions (docs/performance.md): the dependency
rows are not de-duplicated when the table's primary key already makes them unique, and the
join of queued systems to their dependency rows is sized from the rows it really returns.
These helpers find both in a plan, so the benchmark can report them and the tests can
check that they still hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

DEPENDENCY_TABLE = "derivation_dependencies"
DEPENDENCY_KEY_COLUMN = "depends_on_id"

Plan = dict[str, Any]


@dataclass(frozen=True)
class RowEstimate:
    """A plan node's estimated rows against the rows it actually returned (all loops)."""

    node: str
    estimated: float
    actual: float

    @property
    def ratio(self) -> float:
        """Estimated / actual: 1 is exact, 0.01 means 100 times too few rows expected."""
        return self.estimated / self.actual if self.actual else float("inf")


def explain(conn: psycopg.Connection, query: sql.Composable, *, analyze: bool = False) -> Plan:
    """The top plan node of ``query`` (with actual rows when ``analyze``)."""
    options = sql.SQL("analyze, format json" if analyze else "format json")
    row = conn.execute(sql.SQL("explain ({}) {}").format(options, query)).fetchone()
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return document[0]["Plan"]


def nodes(plan: Plan) -> Iterator[Plan]:
    """Every node of the plan, parents before their children."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def _reads_dependencies(plan: Plan) -> bool:
    return any(node.get("Relation Name") == DEPENDENCY_TABLE for node in nodes(plan))


def _keys(plan: Plan) -> list[str]:
    if plan["Node Type"] == "Unique":  # a Unique node prints no keys: its input's sort does
        return [key for child in plan.get("Plans", []) for key in child.get("Sort Key", [])]
    return plan.get("Group Key", [])


def deduplicates_dependencies(plan: Plan) -> bool:
    """Whether the plan groups dependency rows by package (de-duplicates them) anywhere."""
    return any(
        node["Node Type"] in ("Aggregate", "Unique")
        and _reads_dependencies(node)
        and any(key.endswith("." + DEPENDENCY_KEY_COLUMN) for key in _keys(node))
        for node in nodes(plan)
    )


def dependency_join_estimate(plan: Plan) -> RowEstimate:
    """Estimated vs actual rows of the lowest join that reads the dependency table.

    ``plan`` must come from ``explain(..., analyze=True)``. Rows are per loop in a plan,
    so both sides are multiplied by the node's loops.
    """
    joins = [
        node
        for node in nodes(plan)
        if node["Node Type"] in ("Nested Loop", "Hash Join", "Merge Join")
        and _reads_dependencies(node)
    ]
    if not joins:
        raise ValueError(f"no join reads {DEPENDENCY_TABLE} in this plan")
    lowest = joins[-1]
    loops = lowest.get("Actual Loops", 1)
    return RowEstimate(
        node=lowest["Node Type"],
        estimated=lowest["Plan Rows"] * loops,
        actual=lowest["Actual Rows"] * loops,
    )
