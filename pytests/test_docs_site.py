"""The dbt docs site in headless Chromium: the view page and lineage; screenshots to artifacts/."""

from collections.abc import Iterator

import pytest
from selenium.webdriver import Chrome

from buildqueue.paths import PROJECT_DIR
from support import browser as web
from support.docs_site import DocsArtifacts

VIEW = "model.buildqueue.view_build_queue_status"
DRAWN_NODES = """
    var root = angular.element(document.body).injector(), graph = root && root.get('graph');
    var cy = graph && graph.orientation === 'fullscreen' && graph.graph_element;
    var shown = function (n) { return n.data('display') === 'element'; };
    var drawn = cy ? cy.nodes().filter(shown) : [];
    return drawn.length ? drawn.map(function (node) { return node.id(); }) : null;
"""


@pytest.fixture(scope="module")
def site(docs: DocsArtifacts) -> Iterator[str]:
    with web.serve_directory(docs.target_dir) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def browser() -> Iterator[Chrome]:
    try:
        web.find_browser()
    except web.BrowserUnavailable as error:
        pytest.skip(f"headless Chromium is not installed here: {error}")
    with web.headless_chromium() as session:
        yield session


def test_the_view_page_shows_the_model(site: str, browser: Chrome) -> None:
    browser.get(f"{site}#!/model/{VIEW}")
    # the page's headings come first, its model's data later: wait for the model's parents
    found = "var t = document.body.innerText; return /Depends On[^]*int_/.test(t) ? t : null"
    text = web.wait_for(browser, found)
    web.screenshot(browser, PROJECT_DIR / "artifacts" / "docs-view-page.png")
    for shown in ("view_build_queue_status", "pending_packages", "cache_status", "int_"):
        assert shown in text


def test_the_lineage_graph_runs_from_the_sources_to_grafana(site: str, browser: Chrome) -> None:
    browser.get("about:blank")  # the site reads the graph parameters on a fresh load
    browser.get(f"{site}#!/model/{VIEW}?g_v=1&g_i=%2Bview_build_queue_status%2B")
    drawn = set(web.wait_for(browser, DRAWN_NODES))
    web.screenshot(browser, PROJECT_DIR / "artifacts" / "docs-lineage.png")
    tables = ("build_reservations", "commits", "derivation_dependencies", "derivations")
    assert {f"source.buildqueue.crystal_forge.{table}" for table in tables} <= drawn
    downstream = {"model.buildqueue.build_queue_samples", "exposure.buildqueue.build_queue_alerts",
                  "exposure.buildqueue.build_queue_dashboard"}  # fmt: skip
    assert downstream <= drawn, sorted(drawn)
