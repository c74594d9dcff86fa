"""What `dbt build` leaves in the database: the view and the queue history, both in the
view's schema; nothing in Crystal Forge's schema, no trigger on its tables."""

from __future__ import annotations

import psycopg

from buildqueue.sampler import SAMPLE_MODEL
from support.scratch import EXAMPLE_SCHEMA as SOURCE_SCHEMA
from support.scratch import VIEW_SCHEMA

OURS = ("view_build_queue_status", SAMPLE_MODEL)


def test_the_view_and_the_samples_table_are_all_that_is_built(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "select c.relname, c.relkind from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s order by 1",
            (VIEW_SCHEMA,),
        )
        assert cur.fetchall() == [
            (SAMPLE_MODEL, "r"),
            (f"{SAMPLE_MODEL}_pkey", "i"),  # its primary key: one sample per bucket
            ("view_build_queue_status", "v"),
        ]


def test_nothing_of_ours_in_the_source_schema(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "select n.nspname, c.relname from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where c.relname = any(%s) and n.nspname = %s",
            (list(OURS), SOURCE_SCHEMA),
        )
        assert cur.fetchall() == []
        cur.execute(
            "select tgrelid::regclass::text, tgname from pg_trigger t"
            " join pg_class c on c.oid = t.tgrelid"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and not t.tgisinternal",
            (SOURCE_SCHEMA,),
        )
        assert cur.fetchall() == [], "no trigger on Crystal Forge's tables"


def test_view_definition_reads_the_source_tables_and_now(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "select pg_get_viewdef(%s::regclass)", (f"{VIEW_SCHEMA}.view_build_queue_status",)
        )
        (definition,) = cur.fetchone()
    for table in ("derivations", "derivation_dependencies", "build_reservations", "commits"):
        assert f"{SOURCE_SCHEMA}.{table}" in definition
    assert "now()" in definition  # staleness is computed at query time, not at build time
