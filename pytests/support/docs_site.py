"""dbt docs: generate the site and find everything it would show without a description.

`undocumented` is the check behind pytests/test_descriptions.py: every model, model
column, source, source table, source column, seed, macro, analysis and exposure of this
project must have a description, every column a model really has must be documented
(and no documented column may be missing from it). Real columns come from
catalog.json (tables and views) or, for ephemeral models, from running their compiled
SQL with ``limit 0``. A source table may hold columns the project never reads; only those
a model names in its SQL must be documented.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from buildqueue.dbt import DbtProject
from buildqueue.paths import SCRATCH_DIR

PROJECT_NAME = "buildqueue"
DOCS_TARGET_DIR = SCRATCH_DIR / "docs-site"
"""Where the tests generate the site: a target path of its own, so later dbt commands
(compile, ls) cannot overwrite the manifest the served site reads."""
DESCRIBED_RESOURCES = ("model", "seed", "analysis")


@dataclass
class DocsArtifacts:
    """What `dbt docs generate` wrote: the site's folder, manifest and catalog."""

    target_dir: Path
    manifest: dict[str, Any]
    catalog: dict[str, Any]

    @property
    def index_html(self) -> Path:
        return self.target_dir / "index.html"


def generate_docs(project: DbtProject, target_dir: Path = DOCS_TARGET_DIR) -> DocsArtifacts:
    """Run `dbt docs generate` into ``target_dir``; load its manifest.json and catalog.json."""
    project.invoke("docs", "generate", "--target-path", str(target_dir))
    return DocsArtifacts(
        target_dir=target_dir,
        manifest=json.loads((target_dir / "manifest.json").read_text()),
        catalog=json.loads((target_dir / "catalog.json").read_text()),
    )


def _ours(node: dict[str, Any]) -> bool:
    return node.get("package_name") == PROJECT_NAME


def _blank(text: Any) -> bool:
    return not str(text or "").strip()


def model_columns(docs: DocsArtifacts, conn: psycopg.Connection) -> dict[str, list[str]]:
    """The real columns of every model of the project, by unique_id."""
    columns: dict[str, list[str]] = {}
    for unique_id, node in docs.manifest["nodes"].items():
        if node["resource_type"] != "model" or not _ours(node):
            continue
        if unique_id in docs.catalog["nodes"]:
            catalog_columns = docs.catalog["nodes"][unique_id]["columns"].values()
            columns[unique_id] = [c["name"] for c in sorted(catalog_columns, key=_index)]
        elif node.get("compiled_code"):
            with conn.cursor() as cur:
                cur.execute(f"select * from ({node['compiled_code']}) as model limit 0")
                columns[unique_id] = [column.name for column in cur.description or []]
        else:
            raise ValueError(f"{unique_id}: neither in catalog.json nor compiled")
    return columns


def _index(column: dict[str, Any]) -> int:
    return int(column.get("index") or 0)


def _column_problems(name: str, documented: dict[str, Any], real: list[str] | None) -> list[str]:
    problems = []
    for column in real if real is not None else list(documented):
        entry = documented.get(column) or documented.get(column.lower())
        if entry is None:
            problems.append(f"{name}: column {column} is not documented")
        elif _blank(entry.get("description")):
            problems.append(f"{name}: column {column} has no description")
    if real is not None:
        problems += [
            f"{name}: documented column {column} does not exist"
            for column in documented
            if column not in real
        ]
    return problems


def columns_read(manifest: dict[str, Any], source_id: str, columns: list[str]) -> list[str]:
    """The columns of a source that the models selecting from it name in their SQL.

    A live source table may carry columns the project never reads; those need no
    description here. A column a staging model reads must have one.
    """
    readers = [
        node.get("raw_code") or ""
        for node in manifest["nodes"].values()
        if source_id in (node.get("depends_on") or {}).get("nodes", [])
    ]
    return [
        column
        for column in columns
        if any(re.search(rf"\b{re.escape(column)}\b", code) for code in readers)
    ]


def undocumented(docs: DocsArtifacts, real_model_columns: dict[str, list[str]]) -> list[str]:
    """One line per missing description; [] when everything is described."""
    manifest = docs.manifest
    return [
        *_node_problems(manifest, real_model_columns),
        *_source_problems(manifest, docs.catalog),
        *_macro_problems(manifest),
        *_exposure_problems(manifest),
    ]


def _node_problems(manifest: dict[str, Any], real_model_columns: dict[str, list[str]]) -> list[str]:
    """Models, seeds and analyses: a description each; models' columns match the real ones."""
    problems: list[str] = []
    for unique_id, node in sorted(manifest["nodes"].items()):
        if node["resource_type"] not in DESCRIBED_RESOURCES or not _ours(node):
            continue
        if _blank(node.get("description")):
            problems.append(f"{unique_id}: no description")
        if node["resource_type"] == "model":
            real = real_model_columns.get(unique_id)
            problems += _column_problems(unique_id, node.get("columns") or {}, real)
        elif node["resource_type"] == "analysis":
            problems += _column_problems(unique_id, node.get("columns") or {}, None)
    return problems


def _source_problems(manifest: dict[str, Any], catalog: dict[str, Any]) -> list[str]:
    """Every source table of the project (see `_one_source_problems`)."""
    problems: list[str] = []
    for unique_id, source in sorted(manifest["sources"].items()):
        if _ours(source):
            problems += _one_source_problems(manifest, catalog, unique_id, source)
    return problems


def _one_source_problems(
    manifest: dict[str, Any], catalog: dict[str, Any], unique_id: str, source: dict[str, Any]
) -> list[str]:
    """A source and its table described, their documented columns described; when the
    table is in the catalog, every column a model reads documented and every documented
    column real."""
    problems: list[str] = []
    if _blank(source.get("source_description")):
        problems.append(f"source {source['source_name']}: no description")
    if _blank(source.get("description")):
        problems.append(f"{unique_id}: no description")
    documented = source.get("columns") or {}
    problems += _column_problems(unique_id, documented, None)
    in_catalog = catalog["sources"].get(unique_id)
    if not in_catalog:
        return problems
    real = [c["name"] for c in sorted(in_catalog["columns"].values(), key=_index)]
    problems += [
        f"{unique_id}: column {column} is read by the project but not documented"
        for column in columns_read(manifest, unique_id, real)
        if column not in documented
    ]
    problems += [
        f"{unique_id}: documented column {column} does not exist"
        for column in documented
        if column not in real
    ]
    return problems


def _macro_problems(manifest: dict[str, Any]) -> list[str]:
    """Every macro of the project and each of its arguments described."""
    problems: list[str] = []
    for unique_id, macro in sorted(manifest["macros"].items()):
        if not _ours(macro):
            continue
        if _blank(macro.get("description")):
            problems.append(f"{unique_id}: no description")
        for argument in macro.get("arguments") or []:
            if _blank(argument.get("description")):
                problems.append(f"{unique_id}: argument {argument.get('name')} has no description")
    return problems


def _exposure_problems(manifest: dict[str, Any]) -> list[str]:
    """Every exposure of the project described."""
    return [
        f"{unique_id}: no description"
        for unique_id, exposure in sorted(manifest["exposures"].items())
        if _ours(exposure) and _blank(exposure.get("description"))
    ]
