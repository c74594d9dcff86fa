{# dbt run-operation pause_view_for_upgrade --target prod (_macros.yml). #}
{% macro pause_view_for_upgrade() %}
    {% set view = adapter.get_relation(database=target.database, schema=target.schema, identifier='view_build_queue_status') %}
    {% if view is none %}
        {{ log('Nothing to pause: ' ~ target.schema ~ '.view_build_queue_status does not exist in database ' ~ target.database ~ ' (target ' ~ target.name ~ '). The upgrade can go ahead; build the view afterwards with dbt build.', info=true) }}
        {{ return('') }}
    {% endif %}
    {% set columns = [] %}
    {% for row in run_query(view_columns_query(view)) %}
        {% do columns.append(
            'null::' ~ row[1] ~ (' collate ' ~ adapter.quote(row[2]) if row[2] else '') ~ ' as ' ~ adapter.quote(row[0])
        ) %}
    {% endfor %}
    {% set message = 'view_build_queue_status is paused for a Crystal Forge upgrade (dbt run-operation pause_view_for_upgrade). Fix: run dbt build once the upgrade is done.' %}
    {% do lock_view(view) %}
    {% call statement('pause_view_for_upgrade', auto_begin=true) %}
        {{ paused_view_sql(view, columns, message) }}
    {% endcall %}
    {{ log('Paused ' ~ view ~ ': it reads no table now, keeps its columns, grants and dependent views, and every query on it fails with "' ~ message ~ '". Run the Crystal Forge upgrade, then dbt build.', info=true) }}
{% endmacro %}

{# The view's columns in order: name, type (with modifiers), collation (NULL: none). #}
{% macro view_columns_query(view) %}
    select
        view_column.attname,
        format_type(view_column.atttypid, view_column.atttypmod) as type_name,
        column_collation.collname
    from pg_attribute as view_column
    left join pg_collation as column_collation
        on view_column.attcollation = column_collation.oid
    where
        view_column.attrelid = {{ regclass(view) }}
        and view_column.attnum > 0
        and not view_column.attisdropped
    order by view_column.attnum
{% endmacro %}

{# The same columns, all NULL; a cast that fails on every query carries the message. #}
{% macro paused_view_sql(view, columns, message) %}
    create or replace view {{ view }} with (security_barrier) as
    select
        {{ columns | join(',\n        ') }}
    where {{ "'" ~ message ~ "'" }}::text::integer is not null
{% endmacro %}
