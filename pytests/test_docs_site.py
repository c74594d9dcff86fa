"""The generated dbt docs site, served locally and loaded in headless Chromium.

Opens the view's page and its lineage graph the way an analyst would (by URL), checks
that the page shows the model, its columns and parents, and that the lineage graph draws
the view's upstream sources and downstream Grafana exposures. Screenshots go to
artifacts/ (git-ignored; CI keeps them as build artifacts).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from buildqueue.paths import PROJECT_DIR
from support.browser import BrowserUnavailable, HeadlessChromium, serve_directory
from support.docs_site import DocsArtifacts

ARTIFACTS = PROJECT_DIR / "artifacts"
VIEW = "model.buildqueue.view_build_queue_status"
SAMPLES = "model.buildqueue.build_queue_samples"
SOURCES = [
    f"source.buildqueue.crystal_forge.{name}"
    for name in ("build_reservations", "commits", "derivation_dependencies", "derivations")
]

PAGE_TEXT = "return document.body ? document.body.innerText : ''"
DRAWN_NODES = """
    var root = angular.element(document.body).injector();
    var graph = root && root.get('graph');
    var cy = graph && graph.orientation === 'fullscreen' && graph.graph_element;
    if (!cy) { return null; }
    var drawn = cy.nodes().filter(function (node) {
        return node.data('display') === 'element';
    });
    return drawn.length ? drawn.map(function (node) { return node.id(); }) : null;
"""


@pytest.fixture(scope="module")
def site(docs: DocsArtifacts) -> Iterator[str]:
    assert docs.index_html.exists(), "dbt docs generate wrote no index.html"
    with serve_directory(docs.target_dir) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def browser() -> Iterator[HeadlessChromium]:
    try:
        session = HeadlessChromium()
    except BrowserUnavailable as error:
        pytest.skip(f"headless Chromium is not installed here: {error}")
    with session:
        yield session


def test_view_page_shows_the_model(site: str, browser: HeadlessChromium) -> None:
    browser.open(f"{site}#!/model/{VIEW}")
    text = browser.wait_for(
        "var t = document.body.innerText; return t.indexOf('has_stale_workers') >= 0 ? t : null"
    )
    browser.screenshot(ARTIFACTS / "docs-view-page.png")
    assert "view_build_queue_status" in text
    for column in ("nixos_id", "pending_packages", "worker_ids", "cache_status"):
        assert column in text
    assert "Depends On" in text
    for parent in (
        "int_systems_filtered_to_queue",
        "int_system_packages_aggregated",
        "int_system_reservations_aggregated",
    ):
        assert parent in text


def test_samples_page_shows_the_queue_history(site: str, browser: HeadlessChromium) -> None:
    browser.open(f"{site}#!/model/{SAMPLES}")
    text = browser.wait_for(
        "var t = document.body.innerText; return t.indexOf('packages_pending') >= 0 ? t : null"
    )
    assert "build_queue_samples" in text
    for column in ("sampled_at", "systems_with_stale_workers", "active_workers"):
        assert column in text
    assert "view_build_queue_status" in text  # its parent
    assert "incremental" in text


def test_lineage_graph_shows_sources_and_grafana(site: str, browser: HeadlessChromium) -> None:
    browser.open("about:blank")  # the site reads the graph parameters on a fresh load
    browser.open(f"{site}#!/model/{VIEW}?g_v=1&g_i=%2Bview_build_queue_status%2B")
    drawn = set(browser.wait_for(DRAWN_NODES))
    path = browser.screenshot(ARTIFACTS / "docs-lineage.png")
    assert VIEW in drawn
    assert set(SOURCES) <= drawn, sorted(drawn)
    assert {
        "exposure.buildqueue.build_queue_dashboard",
        "exposure.buildqueue.build_queue_alerts",
        SAMPLES,  # the queue history, between the view and Grafana
    } <= drawn
    # the status catalogue is not upstream of the view, so the graph leaves it out
    assert "source.buildqueue.crystal_forge.derivation_statuses" not in drawn
    assert path.stat().st_size > 10_000  # a drawn graph, not a blank page
    assert "Lineage Graph" in browser.run(PAGE_TEXT)
