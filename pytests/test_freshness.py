"""Source freshness on build_reservations.heartbeat_at: warns once heartbeats go quiet."""

from __future__ import annotations

import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.example import SOURCE_SCHEMA

FRESHNESS_NODE = "source.buildqueue.crystal_forge.build_reservations"


def test_freshness_passes_on_the_example(project: DbtProject, build: object) -> None:
    # the example's times are "seconds ago" at load time: reload, or a long session (a
    # busy machine, more tests before this one) ages its newest heartbeat past 5 minutes
    project.load_fixtures()
    outcome = project.invoke("source", "freshness")
    assert outcome.node_statuses[FRESHNESS_NODE] == "pass", outcome.describe()


@pytest.mark.usefixtures("reload_fixtures")
def test_freshness_warns_when_every_heartbeat_is_old(
    project: DbtProject, database: Database
) -> None:
    with database.connect() as conn:
        conn.execute(
            f"update {SOURCE_SCHEMA}.build_reservations "
            "set heartbeat_at = now() - interval '1 hour'"
        )
    outcome = project.invoke("source", "freshness", check=False)
    assert outcome.node_statuses[FRESHNESS_NODE] == "warn", outcome.describe()
