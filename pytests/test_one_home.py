"""One home per fact, and its copies checked against it: the view's enforced contract (README
column table, report.VIEW_COLUMNS); dbt_project.yml's vars (README table, `validated_var`'s
forms); alert thresholds (each Grafana rule writes its var's default; each analysis reads it)."""

import re

import pytest
import yaml

from buildqueue.dbt import project_vars
from buildqueue.paths import PROJECT_DIR
from buildqueue.report import VIEW_COLUMNS
from support.docs_site import DocsArtifacts
from support.grafana_files import rules_by_uid

README = (PROJECT_DIR / "README.md").read_text()


def _table(section: str) -> list[list[str]]:
    """The rows of the first table under the README's ``## section``, backticks stripped."""
    text = README[README.index(f"## {section}\n") :].split("\n## ")[0]
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| `")]
    return [[cell.strip().strip("`") for cell in row] for row in rows]


def test_the_readme_column_table_is_the_contract(docs: DocsArtifacts) -> None:
    node = docs.manifest["nodes"]["model.buildqueue.view_build_queue_status"]
    assert node["config"]["contract"]["enforced"] is True
    contract = [(column["name"], column["data_type"]) for column in node["columns"].values()]
    assert [(row[0], row[1]) for row in _table("The view")] == contract
    assert [name for name, _ in contract] == list(VIEW_COLUMNS)


def test_the_readme_var_table_is_dbt_project_yml() -> None:
    documented = {row[0]: yaml.safe_load(row[1]) for row in _table("Configuration")}
    assert documented == project_vars()


def test_setting_validates_every_var() -> None:
    macro = (PROJECT_DIR / "macros" / "settings" / "validated_var.sql").read_text()
    forms = macro[macro.index("{% set forms = {") : macro.index("} %}")]
    assert set(re.findall(r"'(\w+)': '[a-z ]+'", forms)) == set(project_vars())


ALERTS = {
    "buildqueue-stale-workers": ("alert_stale_workers_detected", "stale_heartbeat_threshold"),
    "buildqueue-queue-growing": ("alert_queue_growing_unchecked", "packages_remaining_threshold"),
    "buildqueue-stuck-building": ("alert_system_stuck_building", "stuck_building_threshold"),
    "buildqueue-queue-growing-window": ("alert_queue_growing_over_window", "queue_growth_window"),
    "buildqueue-queue-stalled": ("alert_queue_stalled", "queue_stall_threshold"),
}  # Grafana rule uid -> (its dbt analysis, the var holding its threshold)
VIEW_APPLIES = {"stale_heartbeat_threshold"}  # the rule reads has_stale_workers
NUMBER = re.compile(r"(?<![\w.'])\d+(?:\.\d+)?(?![\w.'])")  # a number standing alone


def test_every_alert_has_a_rule_an_analysis_and_a_var() -> None:
    analyses = {path.stem for path in (PROJECT_DIR / "analyses").glob("alert_*.sql")}
    assert set(rules_by_uid()) == set(ALERTS)
    assert {analysis for analysis, _ in ALERTS.values()} == analyses
    assert {var for _, var in ALERTS.values()} <= set(project_vars())


@pytest.mark.parametrize("uid", ALERTS)
def test_the_rule_holds_its_vars_default_and_no_other_threshold(uid: str) -> None:
    rule, (_, var) = rules_by_uid()[uid], ALERTS[uid]
    default = project_vars()[var]
    sql = "\n".join(node["model"]["rawSql"] for node in rule["data"] if "rawSql" in node["model"])
    (condition,) = {n["refId"]: n["model"] for n in rule["data"]}[rule["condition"]]["conditions"]
    intervals = re.findall(r"interval '([^']*)'", sql, re.IGNORECASE)
    if isinstance(default, int):  # a count: Grafana's threshold compares with it
        assert (intervals, condition["evaluator"]["params"]) == ([], [default])
    else:  # an interval: in the query, unless the view applies it
        assert intervals == ([] if var in VIEW_APPLIES else [default])
        assert condition["evaluator"]["params"] == [0]
    assert set(NUMBER.findall(re.sub(r"interval '[^']*'", "", sql))) <= {"0", "1"}
    assert str(default) in " ".join(rule["annotations"].values())


@pytest.mark.parametrize("analysis, var", ALERTS.values())
def test_the_alert_analysis_reads_its_var(analysis: str, var: str) -> None:
    code = (PROJECT_DIR / "analyses" / f"{analysis}.sql").read_text()
    code = re.sub(r"\{#.*?#\}", "", code, flags=re.S)  # comments may cite the default
    assert var in VIEW_APPLIES or re.search(rf"""\(["']{var}["']\)""", code)
    assert set(NUMBER.findall(code)) <= {"0", "1"}
