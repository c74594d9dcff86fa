"""The Grafana dashboard and alerts are dbt exposures whose lineage reaches every source."""

from __future__ import annotations

import json

import pytest

from buildqueue.dbt import DbtProject
from support.grafana_files import DASHBOARD_FILE, load_dashboard

SOURCES = {"build_reservations", "commits", "derivation_dependencies", "derivations"}


def _lineage(project: DbtProject, exposure: str) -> set[str]:
    outcome = project.invoke(
        "ls",
        "--select",
        f"+exposure:{exposure}",
        "--resource-type",
        "model",
        "--resource-type",
        "source",
        "--resource-type",
        "exposure",
        "--output",
        "json",
        "--output-keys",
        "unique_id",
    )
    return {json.loads(line)["unique_id"] for line in outcome.result.result}


@pytest.mark.parametrize("exposure", ["build_queue_dashboard", "build_queue_alerts"])
def test_exposure_lineage_reaches_the_sources(project: DbtProject, exposure: str) -> None:
    lineage = _lineage(project, exposure)
    assert f"exposure.buildqueue.{exposure}" in lineage
    assert "model.buildqueue.view_build_queue_status" in lineage
    assert "model.buildqueue.build_queue_samples" in lineage  # the queue history
    assert {"model.buildqueue.int_systems_filtered_to_queue"} <= lineage
    assert {f"source.buildqueue.crystal_forge.{name}" for name in SOURCES} <= lineage
    # the status catalogue is not read by the view, so it is not upstream of Grafana
    assert "source.buildqueue.crystal_forge.derivation_statuses" not in lineage


def test_dashboard_exposure_names_the_dashboard() -> None:
    text = (
        DASHBOARD_FILE.parents[2] / "models/marts/monitoring/_monitoring__exposures.yml"
    ).read_text()
    assert load_dashboard()["uid"] in text
    assert DASHBOARD_FILE.name in text
