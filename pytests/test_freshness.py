"""Source freshness on build_reservations.heartbeat_at: warns once heartbeats go quiet."""

from __future__ import annotations

from collections.abc import Callable

from buildqueue.database import Database
from buildqueue.dbt import DbtProject

FRESHNESS_NODE = "source.buildqueue.crystal_forge.build_reservations"


def test_freshness_passes_on_the_example(fresh_example: DbtProject) -> None:
    outcome = fresh_example.invoke("source", "freshness")
    assert outcome.node_statuses[FRESHNESS_NODE] == "pass", outcome.describe()


def test_freshness_warns_when_every_heartbeat_is_old(
    example_copy: Callable[..., DbtProject], database: Database
) -> None:
    copy = example_copy("freshness", view=False)
    with database.connect() as conn:
        conn.execute(
            f"update {copy.schema}.build_reservations set heartbeat_at = now() - interval '1 hour'"
        )
    outcome = copy.invoke("source", "freshness", check=False)
    assert outcome.node_statuses[FRESHNESS_NODE] == "warn", outcome.describe()
