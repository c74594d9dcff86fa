"""What `dbt build` leaves in the database: one view, nothing else of ours."""

from __future__ import annotations

import psycopg

from support.scratch import EXAMPLE_SCHEMA, VIEW_SCHEMA


def test_the_mart_is_a_view_and_nothing_else_is_materialized(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "select c.relname, c.relkind from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s",
            (VIEW_SCHEMA,),
        )
        assert cur.fetchall() == [("view_build_queue_status", "v")]


def test_view_definition_reads_the_source_tables_and_now(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "select pg_get_viewdef(%s::regclass)", (f"{VIEW_SCHEMA}.view_build_queue_status",)
        )
        (definition,) = cur.fetchone()
    for table in ("derivations", "derivation_dependencies", "build_reservations", "commits"):
        assert f"{EXAMPLE_SCHEMA}.{table}" in definition
    assert "now()" in definition  # staleness is computed at query time, not at build time
