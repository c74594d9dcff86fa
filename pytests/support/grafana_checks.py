"""Alert rules evaluated as Grafana does (``for`` aside), on a database instead of a server."""

from __future__ import annotations

import operator
from datetime import timedelta
from typing import Any, NamedTuple

import psycopg

from buildqueue.perf.corpus import expand
from support.grafana_files import EXPRESSION_UID


class AlertEvaluation(NamedTuple):
    value: float | None  # what ``reduce`` gave
    firing: bool


def evaluate_rule(rule: dict[str, Any], conn: psycopg.Connection) -> AlertEvaluation:
    """Evaluate ``rule``'s condition once on ``conn``; an unknown expression is a KeyError."""
    nodes = {item["refId"]: item for item in rule["data"]}
    reduced: list[float | None] = []

    def value_of(ref_id: str) -> Any:
        item, model = nodes[ref_id], nodes[ref_id]["model"]
        if item["datasourceUid"] != EXPRESSION_UID:  # SQL over its relativeTimeRange
            span = timedelta(seconds=item["relativeTimeRange"]["from"])
            cur = conn.execute(expand(model["rawSql"], span, 1))  # type: ignore[arg-type]
            assert cur.description and cur.description[0].name == "time", model["rawSql"]
            return [float(row[-1]) for row in cur.fetchall() if row[-1] is not None]
        source = value_of(model["expression"])
        if model["type"] == "reduce":
            assert model["reducer"] == "last", f"reducer {model['reducer']} is not modelled"
            reduced.append(source[-1] if source else None)
            return reduced[-1]
        (condition,) = model["conditions"]
        kind, (limit, *_) = condition["evaluator"]["type"], condition["evaluator"]["params"]
        return source is not None and {"gt": operator.gt, "lt": operator.lt}[kind](source, limit)

    firing = bool(value_of(rule["condition"]))
    return AlertEvaluation(reduced[-1] if reduced else None, firing)
