"""Everything dbt docs shows has a description, and every real column is documented."""

from __future__ import annotations

import psycopg

from support.docs_site import DocsArtifacts, model_columns, undocumented


def test_everything_is_described(docs: DocsArtifacts, conn: psycopg.Connection) -> None:
    problems = undocumented(docs, model_columns(docs, conn))
    assert problems == [], "missing descriptions:\n" + "\n".join(problems)


def test_the_check_sees_every_kind_of_node(docs: DocsArtifacts, conn: psycopg.Connection) -> None:
    """Blank out one description of each kind: the check must report each of them."""
    manifest = docs.manifest
    view = manifest["nodes"]["model.buildqueue.view_build_queue_status"]
    source = manifest["sources"]["source.buildqueue.crystal_forge.commits"]
    macro = manifest["macros"]["macro.buildqueue.setting"]
    analysis = manifest["nodes"]["analysis.buildqueue.cache_push_lag"]
    exposure = manifest["exposures"]["exposure.buildqueue.build_queue_dashboard"]
    real = model_columns(docs, conn)
    assert "has_stale_workers" in real["model.buildqueue.view_build_queue_status"]
    assert "nixos_id" in real["model.buildqueue.int_systems_filtered_to_queue"]  # ephemeral
    saved = [
        (view, "description", view.get("description")),
        (source, "description", source.get("description")),
        (macro, "description", macro.get("description")),
        (analysis, "description", analysis.get("description")),
        (exposure, "description", exposure.get("description")),
        (view, "columns", view.get("columns")),
        (source, "columns", source.get("columns")),
    ]
    try:
        for node, key, _ in saved:
            node[key] = {} if key == "columns" else ""
        problems = "\n".join(undocumented(docs, real))
    finally:
        for node, key, value in saved:
            node[key] = value
    for expected in (
        "model.buildqueue.view_build_queue_status: no description",
        "source.buildqueue.crystal_forge.commits: no description",
        "macro.buildqueue.setting: no description",
        "analysis.buildqueue.cache_push_lag: no description",
        "exposure.buildqueue.build_queue_dashboard: no description",
        "model.buildqueue.view_build_queue_status: column has_stale_workers is not documented",
        "source.buildqueue.crystal_forge.commits: column commit_timestamp is read by the project",
    ):
        assert expected in problems
