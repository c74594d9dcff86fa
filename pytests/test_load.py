"""The load command's machinery at toy scale: fleet loader, view build, pollers, report.

Timing is never asserted here (numbers come from `buildqueue load`, see
docs/production.md); only that every query succeeded and saw the whole fleet.
"""

from __future__ import annotations

import pytest
from support.scratch import ScratchSchemas

from buildqueue.database import Database
from buildqueue.dbt import DbtError, DbtProject
from buildqueue.load import percentile, run_load

SYSTEMS, PACKAGES = 20, 10


def test_small_load_run(database: Database, scratch_schema: ScratchSchemas) -> None:
    project = DbtProject(database, target="ci", schema=scratch_schema("load_view"))
    report = run_load(
        project,
        systems=SYSTEMS,
        packages=PACKAGES,
        clients=2,
        seconds=0.5,
        source_schema=scratch_schema("load"),
    )
    assert report.stats.errors == []
    assert report.stats.queries > 0
    assert dict(report.stats.row_counts) == {SYSTEMS: report.stats.queries}
    with database.connect() as conn:
        totals = conn.execute(
            "select min(total_packages), max(total_packages), sum(active_workers) > 0"
            f" from {project.schema}.view_build_queue_status"
        ).fetchone()
    assert totals == (PACKAGES, PACKAGES, True)
    assert "throughput" in report.describe()


def test_fleet_loader_refuses_production(
    database: Database, scratch_schema: ScratchSchemas
) -> None:
    prod = DbtProject(database, target="prod", schema=scratch_schema("load_guard_view"))
    source = scratch_schema("load_guard")
    with pytest.raises(DbtError, match="Refusing to write Crystal Forge tables"):
        run_load(prod, systems=2, packages=2, seconds=0.1, source_schema=source)


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5, abs=0.1)
    assert percentile(values, 0.99) == pytest.approx(99.0, abs=0.1)
    assert percentile([7.0], 0.99) == 7.0
