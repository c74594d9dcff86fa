"""One home per fact; every other copy is checked against it here.

- the view's columns and types: the enforced dbt contract on view_build_queue_status
  (read from the manifest dbt wrote); the README's column table and report.VIEW_COLUMNS
  must match it, in order;
- the vars: dbt_project.yml; the README's configuration table (names and defaults) and
  the forms setting() validates must cover exactly the same vars.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from buildqueue.paths import PROJECT_DIR
from buildqueue.report import VIEW_COLUMNS
from support.docs_site import DocsArtifacts

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


def _project_vars() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"]


def test_the_readme_var_table_is_dbt_project_yml() -> None:
    documented = {row[0]: yaml.safe_load(row[1]) for row in _table_rows(_section("Configuration"))}
    assert documented == _project_vars()


def test_setting_validates_every_var() -> None:
    macro = (PROJECT_DIR / "macros" / "settings" / "validated_var.sql").read_text()
    forms = macro[
        macro.index("{% set forms = {") : macro.index("} %}", macro.index("{% set forms"))
    ]
    validated = set(re.findall(r"'(\w+)': '[a-z ]+'", forms))
    assert validated == set(_project_vars())
