"""`buildqueue view-sql`: the view's migration as dbt compiles it and the materialization
wraps it (CTEs inlined, security_barrier, grants); test_deploy.py compares the two."""

import re
from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from buildqueue.dbt import VIEW, DbtError, DbtProject

# macro inline_ephemeral_ctes' rewrite (create_view_as.sql); the test keeps the two equal
_EPHEMERAL_CTE = re.compile(r"(__dbt__cte__\w+)\s+as\s+\(")


def view_sql(project: DbtProject, vars: dict[str, Any] | None = None) -> str:
    """The migration text: create schema, create or replace view, grants, in a transaction."""
    outcome = project.invoke("compile", "--select", VIEW, vars=vars)
    results = getattr(outcome.result.result, "results", None) or []
    node = next((r.node for r in results if getattr(r.node, "name", None) == VIEW), None)
    if node is None or not getattr(node, "compiled_code", None):
        raise DbtError(f"dbt compile returned no SQL for {VIEW}. {outcome.describe()}")
    select = _EPHEMERAL_CTE.sub(r"\1 as not materialized (", node.compiled_code.strip())
    # two-part names: the migration runs in whatever database it is applied to
    select = select.replace(sql.Identifier(node.database).as_string() + ".", "")
    schema, view = sql.Identifier(node.schema).as_string(), sql.Identifier(node.schema, VIEW)
    lines = [
        f"-- {VIEW} for dbt target '{project.target}', vars {vars or {}};",
        f"-- written by `buildqueue view-sql` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Status",
        "-- ids were looked up in that database's derivation_statuses: regenerate after",
        "-- renumbering statuses.",
        "begin;",
        f"create schema if not exists {schema};",
        # as create_view_as.sql: a reader's own functions never see rows the view filters out
        f"create or replace view {view.as_string()} with (security_barrier) as\n{select};",
    ]
    for role in (node.config.grants or {}).get("select", []):
        reader = sql.Identifier(role).as_string()
        lines.append(f"grant usage on schema {schema} to {reader};")
        lines.append(f"grant select on {view.as_string()} to {reader};")
    return "\n".join([*lines, "commit;"]) + "\n"
