""" "Queue depth over time" returns at most a few hundred points, whatever the range.

Grafana's own code (@grafana/data's ``rangeutil.calculateInterval``, in headless Chromium)
turns the range and the panel's maxDataPoints into ``$__interval``; the panel's SQL, macros
expanded, then runs on three months of one-minute samples (support.grafana_files).
The panel once returned every sample: 43,200 rows for the dashboard's 30 days.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql

from buildqueue.database import Database
from support.browser import BrowserUnavailable
from support.grafana_files import TimeRange, expand_macros, load_dashboard, panels
from support.scratch import ScratchSchemas
from support.transformations import GrafanaTransformations, TransformationsUnavailable

MAX_POINTS = 400
"""A few hundred: Grafana rounds the interval to a round value, up to ~1.2x maxDataPoints."""
SPANS = [timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=30)]


@pytest.fixture(scope="module")
def grafana_code() -> Iterator[GrafanaTransformations]:
    try:
        with GrafanaTransformations() as code:
            yield code
    except (TransformationsUnavailable, BrowserUnavailable) as error:
        pytest.skip(f"Grafana's code cannot run here: {error}")


def test_history_panel_returns_a_few_hundred_points_at_most(
    grafana_code: GrafanaTransformations, database: Database, scratch_schema: ScratchSchemas
) -> None:
    (panel,) = [p for p in panels(load_dashboard()) if p["title"] == "Queue depth over time"]
    schema = scratch_schema("history_panel")
    now = datetime.now(UTC)
    with database.connect(options=f"-c search_path={schema}") as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "create table {}.build_queue_samples as select"
                " date_bin('1 minute', now(), timestamptz '2000-01-01') - g * interval '1 minute'"
                " as sampled_at, (g % 500)::bigint as packages_pending,"
                " 10::bigint as packages_building from generate_series(0, 129600) as g"
            ).format(sql.Identifier(schema))
        )
        points: dict[str, Any] = {}
        for span in SPANS:
            interval = grafana_code.interval(now - span, now, panel["maxDataPoints"])
            query = expand_macros(
                panel["targets"][0]["rawSql"], TimeRange(now - span, now), interval
            )
            points[f"{span} ({interval})"] = len(conn.execute(query).fetchall())  # type: ignore[arg-type]
    assert all(0 < count <= MAX_POINTS for count in points.values()), points
