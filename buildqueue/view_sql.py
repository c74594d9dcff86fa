"""`buildqueue view-sql`: the view's `create or replace view` statement, for projects that
ship SQL migrations: dbt compiles the view for a target and vars, wrapped as the project's
materialization does (ephemeral CTEs inlined, schema, grants, one transaction);
pytests/test_view_sql.py checks it against `dbt build`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from buildqueue.dbt import DbtError, DbtProject

VIEW = "view_build_queue_status"
# The same rewrite as macro inline_ephemeral_ctes (macros/materializations/create_view_as.sql);
# the test compares the resulting view definition with dbt's, so the two cannot drift apart.
_EPHEMERAL_CTE = re.compile(r"(__dbt__cte__\w+)\s+as\s+\(")


def view_sql(project: DbtProject, vars: dict[str, Any] | None = None) -> str:
    """The migration text: create schema, create or replace view, grants, in a transaction."""
    outcome = project.invoke("compile", "--select", VIEW, vars=vars)
    nodes = [
        result.node
        for result in getattr(outcome.result.result, "results", None) or []
        if getattr(result.node, "name", None) == VIEW
    ]
    if not nodes or not getattr(nodes[0], "compiled_code", None):
        raise DbtError(f"dbt compile returned no SQL for {VIEW}. {outcome.describe()}")
    node = nodes[0]
    schema = node.schema
    select = _EPHEMERAL_CTE.sub(r"\1 as not materialized (", node.compiled_code.strip())
    # two-part names: the migration runs in whatever database it is applied to
    select = select.replace(sql.Identifier(node.database).as_string() + ".", "")
    readers = list((node.config.grants or {}).get("select", []))
    view = sql.Identifier(schema, VIEW).as_string()
    lines = [
        f"-- {VIEW} for dbt target '{project.target}', vars {vars or {}};",
        f"-- written by `buildqueue view-sql` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Status",
        "-- ids were looked up in that database's derivation_statuses: regenerate after",
        "-- renumbering statuses.",
        "begin;",
        f"create schema if not exists {sql.Identifier(schema).as_string()};",
        # as the materialization creates it (create_view_as.sql): a reader's own functions in
        # a `where` never see rows the view filters out
        f"create or replace view {view} with (security_barrier) as\n{select};",
    ]
    for role in readers:
        reader = sql.Identifier(role).as_string()
        lines.append(f"grant usage on schema {sql.Identifier(schema).as_string()} to {reader};")
        lines.append(f"grant select on {view} to {reader};")
    lines.append("commit;")
    return "\n".join(lines) + "\n"
