"""`buildqueue load` at toy scale: pgbench runs the dashboard's queries and counts late ones.

Timing is never asserted (numbers come from `./run load`, docs/performance.md): only that
pgbench runs every panel and rule query against the view, that its late count reaches the
result (a latency limit no query can meet makes every transaction late), and the search.
"""

from __future__ import annotations

from typing import Any

import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtOutcome
from buildqueue.perf import capacity
from buildqueue.perf.corpus import grafana_queries
from support.scratch import VIEW_SCHEMA


def test_pgbench_runs_every_dashboard_and_rule_query(database: Database, build: DbtOutcome) -> None:
    queries = grafana_queries()
    assert {name.split(":")[0] for name in queries} == {"panel", "rule"}
    args: dict[str, Any] = {"seconds": 2, "clients": 1}
    assert capacity.late_share(database, VIEW_SCHEMA, queries, 1, 1.0, limit=60, **args) == 0
    assert capacity.late_share(database, VIEW_SCHEMA, queries, 1, 1.0, limit=1e-5, **args) > 0.9


def test_a_failing_query_is_an_error(database: Database, build: DbtOutcome) -> None:
    with pytest.raises(SystemExit, match="pgbench failed"):
        capacity.late_share(database, VIEW_SCHEMA, {"panel: x": "select nope"}, 1, 1.0, seconds=1)


@pytest.mark.parametrize("limit", [0, 1, 5, 37, 256])
def test_search_finds_the_largest_good_viewer_count(monkeypatch: Any, limit: int) -> None:
    tried: list[int] = []

    def fake(_db: Any, _schema: str, _queries: Any, viewers: int, *_: Any, **__: Any) -> float:
        tried.append(viewers)
        return 0.0 if viewers <= limit else 0.5

    monkeypatch.setattr(capacity, "late_share", fake)
    assert capacity.capacity(None, "s", {}, 1.0, max_viewers=256) == limit  # type: ignore[arg-type]
    assert len(tried) <= 18
