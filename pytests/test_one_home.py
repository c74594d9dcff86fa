"""One home per fact; every other copy is checked against it here.

- the view's columns and types: the enforced dbt contract on view_build_queue_status
  (read from the manifest dbt wrote); the README's column table and report.VIEW_COLUMNS
  must match it, in order;
- the vars: dbt_project.yml; the README's configuration table (names and defaults) and
  the forms setting() validates must cover exactly the same vars;
- the example's expected rows: the seed expected_view_build_queue_status, read by the dbt
  test assert_example_rows_match_spec and by pytest (support.example), typed like the
  view's contract;
- why server-c's cache_status departs from the spec's example table: the doc block
  departure_server_c_cache_status; every other place that talks about it names the block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from buildqueue.dbt import project_vars
from buildqueue.paths import PROJECT_DIR
from buildqueue.report import VIEW_COLUMNS
from support import grafana_files
from support.analyses import ANALYSES_DIR, analysis_names
from support.docs_site import DocsArtifacts
from support.example import AGE_COLUMNS, EXPECTED_ROWS, EXPECTED_SEED
from support.seed_csv import column_types

README = (PROJECT_DIR / "README.md").read_text()
VIEW_NODE = "model.buildqueue.view_build_queue_status"


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _table_rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 2:
            rows.append([cell.strip("`") for cell in cells])
    return rows


def _contract(docs: DocsArtifacts) -> list[tuple[str, str]]:
    node = docs.manifest["nodes"][VIEW_NODE]
    assert node["config"]["contract"]["enforced"] is True
    columns = sorted(node["columns"].values(), key=lambda column: column.get("index") or 0)
    return [(column["name"], column["data_type"]) for column in columns]


def test_the_view_has_an_enforced_contract_with_every_column_typed(docs: DocsArtifacts) -> None:
    contract = _contract(docs)
    assert [name for name, _ in contract] == list(VIEW_COLUMNS)
    assert all(data_type for _, data_type in contract)


def test_the_readme_column_table_is_the_contract(docs: DocsArtifacts) -> None:
    documented = [(row[0], row[1]) for row in _table_rows(_section("The view"))]
    assert documented == _contract(docs)


def test_the_readme_var_table_is_dbt_project_yml() -> None:
    documented = {row[0]: yaml.safe_load(row[1]) for row in _table_rows(_section("Configuration"))}
    assert documented == project_vars()


def test_setting_validates_every_var() -> None:
    macro = (PROJECT_DIR / "macros" / "settings" / "validated_var.sql").read_text()
    forms = macro[
        macro.index("{% set forms = {") : macro.index("} %}", macro.index("{% set forms"))
    ]
    validated = set(re.findall(r"'(\w+)': '[a-z ]+'", forms))
    assert validated == set(project_vars())


# --- the example's expected rows ---------------------------------------------------------

EXAMPLE_TEST = PROJECT_DIR / "tests" / "assert_example_rows_match_spec.sql"


def test_the_dbt_test_reads_the_expected_rows_seed() -> None:
    """The singular test takes its rows from the seed and holds none of its own."""
    code = EXAMPLE_TEST.read_text()
    assert f"ref('{EXPECTED_SEED}')" in code
    assert not re.search(r"\bvalues\b", code, re.IGNORECASE)
    assert "'server-" not in code  # no system names as SQL literals


def test_the_expected_rows_seed_is_typed_like_the_contract(docs: DocsArtifacts) -> None:
    """Its columns are the view's (typed as in the contract) plus one age per load-time time."""
    contract = dict(_contract(docs))
    types = column_types("example", EXPECTED_SEED)
    ages = {age: column for column, age in AGE_COLUMNS.items()}
    for name, data_type in types.items():
        if name in ages:
            assert (contract[ages[name]], data_type) == ("timestamptz", "integer"), name
        else:
            assert data_type == contract[name], name
    assert set(ages) <= set(types)
    assert list(EXPECTED_ROWS[0]) == [name for name in types if name not in ages]


# --- the server-c cache_status departure -------------------------------------------------

DEPARTURE = "departure_server_c_cache_status"
TALKED_ABOUT_IN = ("README.md", "docs", "models", "tests", "seeds", "analyses", "pytests")


def _files() -> list[Path]:
    files = []
    for place in TALKED_ABOUT_IN:
        path = PROJECT_DIR / place
        found = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [f for f in found if f.suffix in (".md", ".sql", ".yml", ".py", ".csv")]
    return files


def test_the_departure_is_one_doc_block() -> None:
    homes = [
        path
        for path in (PROJECT_DIR / "models").rglob("*.md")
        if "{% docs " + DEPARTURE + " %}" in path.read_text()
    ]
    assert len(homes) == 1, homes
    models = yaml.safe_load(
        (PROJECT_DIR / "models" / "marts" / "monitoring" / "_monitoring__models.yml").read_text()
    )
    (view,) = [m for m in models["models"] if m["name"] == "view_build_queue_status"]
    (cache_status,) = [c for c in view["columns"] if c["name"] == "cache_status"]
    assert f"doc('{DEPARTURE}')" in cache_status["description"]
    seeds = yaml.safe_load((PROJECT_DIR / "seeds" / "example" / "_example__seeds.yml").read_text())
    (seed,) = [s for s in seeds["seeds"] if s["name"] == EXPECTED_SEED]
    (seed_cache_status,) = [c for c in seed["columns"] if c["name"] == "cache_status"]
    assert f"doc('{DEPARTURE}')" in seed_cache_status["description"]
    assert DEPARTURE in _section("The view")
    assert DEPARTURE in EXAMPLE_TEST.read_text()


def test_the_departure_is_explained_nowhere_else() -> None:
    """A paragraph that brings up server-c against the spec's definition or example table
    names the doc block instead of arguing the case again."""
    this_file = Path(__file__).resolve()
    offenders = []
    for path in _files():
        if path.resolve() == this_file:
            continue
        text = re.sub(
            r"\{% docs " + DEPARTURE + r" %\}.*?\{% enddocs %\}", "", path.read_text(), flags=re.S
        )
        for paragraph in re.split(r"\n\s*\n", text):
            about = "server-c" in paragraph and re.search(
                r"definition|example table|spec's table", paragraph
            )
            if about and DEPARTURE not in paragraph:
                offenders.append(f"{path.relative_to(PROJECT_DIR)}: {paragraph.strip()[:80]}")
    assert offenders == [], "\n".join(offenders)


# --- the alert thresholds ----------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One alert: its dbt analysis, the var holding its threshold and where that acts."""

    analysis: str
    var: str
    acts_in: str  # "view" (the view applies it), "query" (the SQL) or "condition" (C)


ALERTS = {
    "buildqueue-stale-workers": Alert(
        "alert_stale_workers_detected", "stale_heartbeat_threshold", "view"
    ),
    "buildqueue-queue-growing": Alert(
        "alert_queue_growing_unchecked", "packages_remaining_threshold", "condition"
    ),
    "buildqueue-stuck-building": Alert(
        "alert_system_stuck_building", "stuck_building_threshold", "query"
    ),
    "buildqueue-queue-growing-window": Alert(
        "alert_queue_growing_over_window", "queue_growth_window", "query"
    ),
    "buildqueue-queue-stalled": Alert("alert_queue_stalled", "queue_stall_threshold", "query"),
}
"""Grafana rule uid -> its alert; the threshold's one home is the var in dbt_project.yml."""

INTERVAL_LITERAL = re.compile(r"interval '([^']*)'", re.IGNORECASE)


def _rules() -> dict[str, dict[str, Any]]:
    alerting = grafana_files.load_yaml(grafana_files.ALERTING_FILE)
    return {rule["uid"]: rule for _, rule in grafana_files.alert_rules(alerting)}


def _numbers(text: str) -> set[str]:
    """The numbers standing alone in ``text`` (not the digits of a word such as md5 or 10m)."""
    return set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", text))


def _pending_period(rule: dict[str, Any]) -> set[str]:
    """The number in the rule's `for` (Grafana's pending period, e.g. 10m: {"10"})."""
    return set(re.findall(r"\d+", rule["for"])) - {"0"}


def test_every_alert_has_a_threshold_var() -> None:
    assert set(ALERTS) == set(_rules())
    assert {alert.analysis for alert in ALERTS.values()} == {
        name for name in analysis_names() if name.startswith("alert_")
    }
    assert {alert.var for alert in ALERTS.values()} <= set(project_vars())


def test_each_rule_holds_its_vars_default() -> None:
    """Grafana cannot read dbt vars: each rule writes the default, and nothing else."""
    defaults = project_vars()
    for uid, rule in _rules().items():
        alert, default = ALERTS[uid], defaults[ALERTS[uid].var]
        sql = "\n".join(query["model"]["rawSql"] for query in grafana_files.rule_queries(rule))
        condition = next(node for node in rule["data"] if node["refId"] == rule["condition"])
        (evaluation,) = condition["model"]["conditions"]
        in_query = [default] if alert.acts_in == "query" else []
        in_condition = [default] if alert.acts_in == "condition" else [0]
        assert INTERVAL_LITERAL.findall(sql) == in_query, uid
        assert evaluation["evaluator"]["params"] == in_condition, uid
        assert _numbers(INTERVAL_LITERAL.sub("", sql)) <= {"0", "1"}, uid
        if alert.acts_in == "view":
            assert "has_stale_workers" in sql, uid
        # the prose names the default, and no number but it and the pending period
        prose = " ".join(rule["annotations"].values())
        assert str(default) in prose, uid
        assert _numbers(prose) <= _numbers(str(default)) | _pending_period(rule), uid


def _without_comments(sql: str) -> str:
    return re.sub(r"\{#.*?#\}", "", sql, flags=re.S)


def test_the_alert_analyses_read_their_thresholds_from_the_vars() -> None:
    """No magic number in an alert analysis: its threshold comes through setting()."""
    for alert in ALERTS.values():
        code = _without_comments((ANALYSES_DIR / f"{alert.analysis}.sql").read_text())
        if alert.acts_in != "view":
            assert re.search(rf"""\((["']){alert.var}\1\)""", code), alert.analysis
        assert not re.search(r"interval\s+'\s*\d", code, re.IGNORECASE), alert.analysis
        assert _numbers(code) <= {"0", "1"}, alert.analysis


def test_the_grafana_docs_name_each_alerts_var() -> None:
    """docs/grafana.md's alert table names the vars instead of repeating their defaults."""
    text = (PROJECT_DIR / "docs" / "grafana.md").read_text()
    for uid, alert in ALERTS.items():
        (row,) = [line for line in text.splitlines() if f"(`{uid}`)" in line]
        _, query, fires_when, _ = (cell.strip() for cell in row.strip().strip("|").split("|"))
        assert f"`{alert.var}`" in query + fires_when, uid
        assert _numbers(query + " " + fires_when) <= _pending_period(_rules()[uid]) | {"0"}, uid
