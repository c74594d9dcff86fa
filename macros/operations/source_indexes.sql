{#
    The indexes the spec's performance notes rely on, on the source tables. One list,
    used by the fixtures' DDL and by the create_source_indexes operation.
#}
{% macro source_indexes() %}
    {{ return([
        {'table': 'derivations', 'name': 'idx_derivations_type_status', 'columns': ['derivation_type', 'status_id']},
        {'table': 'derivation_dependencies', 'name': 'idx_derivation_dependencies_derivation_id', 'columns': ['derivation_id']},
        {'table': 'build_reservations', 'name': 'idx_build_reservations_nixos_derivation_id', 'columns': ['nixos_derivation_id']},
        {'table': 'build_reservations', 'name': 'idx_build_reservations_heartbeat_at', 'columns': ['heartbeat_at']},
    ]) }}
{% endmacro %}


{# `create index if not exists` statements for source_indexes(), one per line. #}
{% macro source_indexes_ddl(schema, concurrently=false) %}
    {%- for index in source_indexes() %}
create index {{ 'concurrently ' if concurrently }}if not exists {{ adapter.quote(index.name) }}
    on {{ adapter.quote(schema) }}.{{ adapter.quote(index.table) }} ({{ index.columns | join(', ') }});
    {%- endfor %}
{% endmacro %}


{#
    dbt run-operation create_source_indexes [--args '{concurrently: true, dry_run: true}']
    Creates whichever of the spec's indexes are missing on the source tables (idempotent).
    concurrently: build without blocking writers (for a live database; each index runs
    outside a transaction). dry_run: print the DDL and change nothing.
#}
{% macro create_source_indexes(concurrently=false, dry_run=false, schema=none) %}
    {% set schema = schema or setting('source_schema') %}
    {% set statements = source_indexes_ddl(schema, concurrently=concurrently).strip().split(';') %}
    {% for statement in statements if statement.strip() %}
        {% if dry_run %}
            {{ log(statement.strip() ~ ';', info=true) }}
        {% elif concurrently %}
            {# create index concurrently cannot run inside a transaction block #}
            {% do run_query('commit; ' ~ statement) %}
            {{ log('ok: ' ~ statement.strip().split('\n')[0], info=true) }}
        {% else %}
            {% do run_query(statement) %}
            {{ log('ok: ' ~ statement.strip().split('\n')[0], info=true) }}
        {% endif %}
    {% endfor %}
{% endmacro %}
