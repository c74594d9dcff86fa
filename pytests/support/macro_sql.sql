{#
    The SQL the project's macros return, rendered by `dbt compile --inline` for the SQL
    lint (pytests/support/sql_lint.py): the dbt templater renders a macro file to nothing,
    so this calls each macro that returns SQL and lints what comes back. Each piece starts
    with a `-- lint: <label>` line. Nothing here runs: compile only renders.
    Queries a macro runs itself come from a macro of their own (view_columns_are_kept_query,
    ...), so they are here too. Not covered: one-line statements built by string
    concatenation (assert_not_standby's `select pg_is_in_recovery()`, the status lookup).
#}
{%- set schema = 'crystal_forge_source' -%}
{%- set samples = api.Relation.create(database=target.database, schema=target.schema, identifier='build_queue_samples') -%}
{%- set view = api.Relation.create(database=target.database, schema=target.schema, identifier='view_build_queue_status', type='view') -%}
{%- set intermediate = view.incorporate(path={'identifier': 'view_build_queue_status__dbt_tmp'}) -%}
-- lint: hooks/assert_reader_roles_exist.sql missing_reader_roles_query
{{ missing_reader_roles_query(['grafana', 'grafana_reader']) }}
-- lint: fixtures/crystal_forge_tables_ddl.sql crystal_forge_tables_ddl
{{ crystal_forge_tables_ddl(schema) }}
-- lint: fixtures/publish_fixture.sql publish_fixture (build_reservations)
{{ publish_fixture(api.Relation.create(database=target.database, schema=schema, identifier='fixture_build_reservations')) }}
-- lint: materializations/create_view_as.sql postgres__create_view_as
{{ postgres__create_view_as(view, 'with __dbt__cte__stg_example as (select 1 as one) select one from __dbt__cte__stg_example') }}
-- lint: materializations/grant_schema_usage.sql grant_schema_usage
{{ grant_schema_usage(view) }}
-- lint: materializations/insert_or_skip.sql get_incremental_insert_or_skip_sql
{{ get_incremental_insert_or_skip_sql({
    'target_relation': samples,
    'temp_relation': samples.incorporate(path={'identifier': 'build_queue_samples__dbt_tmp'}),
    'unique_key': ['sampled_at'],
    'dest_columns': [api.Column.create('sampled_at', 'timestamp with time zone'), api.Column.create('systems_queued', 'bigint')],
}) }}
-- lint: materializations/prune_queue_samples.sql prune_queue_samples
{{ prune_queue_samples(samples) }}
-- lint: materializations/view.sql view_columns_are_kept_query
{{ view_columns_are_kept_query(view, intermediate) }}
-- lint: operations/pause_view_for_upgrade.sql view_columns_query
{{ view_columns_query(view) }}
-- lint: operations/pause_view_for_upgrade.sql paused_view_sql
{{ paused_view_sql(view, ['null::text collate "C" as "system_name"', 'null::bigint as "total_packages"'], 'paused for an upgrade') }}
