{#
    dbt's view materialization for PostgreSQL (_macros.yml says why and how it differs):
    dbt-adapters 1.24.5's global_project/macros/materializations/models/view.sql, file
    sha256 2cfa8cdda4ec5a201a945cf7db6693a6a2aa09d97887137cb9b7305d92080c3c, statement for
    statement, but `adapter='postgres'`, lock_view after the intermediate view, and the
    in-place `create or replace view` branch when view_columns_are_kept (dbt's swap is the
    `else`). .ci/lint fails when dbt's file changes: re-diff, then update the hash.
#}
{%- materialization view, adapter='postgres' -%}

  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
  {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
  {%- set backup_relation_type = 'view' if existing_relation is none else existing_relation.type -%}
  {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}
  {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
  {% set grant_config = config.get('grants') %}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}

  {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
  {{ drop_relation_if_exists(preexisting_backup_relation) }}

  -- `BEGIN` happens here:
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ get_create_view_as_sql(intermediate_relation, sql) }}
  {%- endcall %}

  {% if existing_relation is not none and existing_relation.is_view and lock_view(existing_relation)
        and view_columns_are_kept(existing_relation, intermediate_relation) %}
    {% call statement('replace_view_in_place') -%}
      {{ get_create_view_as_sql(target_relation, sql) | replace('create view', 'create or replace view', 1) }}
    {%- endcall %}
    {{ drop_relation_if_exists(intermediate_relation) }}
  {% else %}
    {% if existing_relation is not none %}
      {% set existing_relation = load_cached_relation(existing_relation) %}
      {% if existing_relation is not none %}
        {{ adapter.rename_relation(existing_relation, backup_relation) }}
      {% endif %}
    {% endif %}
    {{ adapter.rename_relation(intermediate_relation, target_relation) }}
  {% endif %}

  {% set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
  {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}

  {% do persist_docs(target_relation, model) %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}

  {{ adapter.commit() }}

  {{ drop_relation_if_exists(backup_relation) }}

  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}

{%- endmaterialization -%}

{# Whether `create or replace view old` with new's query is allowed (_macros.yml). #}
{% macro view_columns_are_kept(old, new) %}
    {{ return(run_query(view_columns_are_kept_query(old, new)).columns[0].values()[0]) }}
{% endmacro %}

{# view_columns_are_kept's query: true when no column of old is missing or changed in new. #}
{% macro view_columns_are_kept_query(old, new) %}
    select count(*) = 0 as columns_are_kept
    from pg_attribute as old_column
    left join pg_attribute as new_column
        on new_column.attrelid = {{ regclass(new) }}
        and old_column.attnum = new_column.attnum
        and not new_column.attisdropped
    where
        old_column.attrelid = {{ regclass(old) }}
        and old_column.attnum > 0
        and not old_column.attisdropped
        and (
            new_column.attname is distinct from old_column.attname
            or format_type(new_column.atttypid, new_column.atttypmod)
                is distinct from format_type(old_column.atttypid, old_column.atttypmod)
            or new_column.attcollation is distinct from old_column.attcollation
        )
{% endmacro %}

{#
    Each try waits at most view_replace_lock_timeout: dashboards queue behind a waiting
    lock request, so this bounds their stall (_macros.yml: lock_view). Returns true.
#}
{% macro lock_view(relation) %}
    {% set timeout, tries = setting('view_replace_lock_timeout'), setting('view_replace_lock_retries') + 1 %}
    {% set oid = run_query('select ' ~ regclass(relation) ~ '::oid').columns[0].values()[0] %}
    {% call statement('lock_view') %}
do $$
declare
    tried_at timestamptz;
begin
    perform set_config('lock_timeout', ceil(extract(epoch from interval '{{ timeout }}') * 1000)::text, true);
    for attempt in 1..{{ tries }} loop
        tried_at := clock_timestamp();
        begin
            execute format('lock table %s in access exclusive mode', {{ oid }}::regclass);
            return;
        exception when lock_not_available then
            perform pg_sleep(extract(epoch from interval '{{ timeout }}') * (attempt < {{ tries }})::integer);
        end;
    end loop;
    perform set_config('buildqueue.lock_holders', coalesce((
        select string_agg(format(
            'pid %s (user %s, application %L, %s for %s)', pid, usename, application_name, state,
            date_trunc('second', clock_timestamp() - xact_start)), '; ' order by xact_start)
        from pg_stat_activity
        where xact_start < tried_at
            and pid in (select pid from pg_locks where relation = {{ oid }} and granted and pid <> pg_backend_pid())
    ), 'another session'), true);
end
$$
    {% endcall %}
    {% set holders = run_query("select current_setting('buildqueue.lock_holders', true)").columns[0].values()[0] %}
    {% if holders %}
        {{ exceptions.raise_compiler_error(
            "Could not replace view " ~ relation ~ ": " ~ holders ~ " held it through " ~ tries ~ " tries of "
            ~ timeout ~ " each (dashboards waited at most " ~ timeout ~ " at a time; the old view still serves). "
            ~ "Fix: end that transaction (select pg_terminate_backend(pid)), or set "
            ~ "idle_in_transaction_session_timeout for its role, then deploy again."
        ) }}
    {% endif %}
    {{ return(true) }}
{% endmacro %}

{# A relation as a regclass literal (quotes in its names doubled). #}
{% macro regclass(relation) %}
    {{ return("'" ~ (relation | string | replace("'", "''")) ~ "'::regclass") }}
{% endmacro %}
